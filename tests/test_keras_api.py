"""The Keras API: a method around the user's own classifier, trained with ``model.fit``."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_advssl
from tf_advssl import distribution, export, methods

SHAPE = (8, 8, 1)
STEPS = 2  # per epoch


def classifier(seed=0):
    init = lambda i: keras.initializers.GlorotUniform(seed + i)  # noqa: E731
    return keras.Sequential([
        keras.Input(SHAPE),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", kernel_initializer=init(0)),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", kernel_initializer=init(1)),
        keras.layers.Dense(3, kernel_initializer=init(2)),
    ])


def arrays(seed=0):
    rng = np.random.RandomState(seed)
    x = rng.uniform(0, 1, size=(40,) + SHAPE).astype(np.float32)
    y = rng.randint(0, 3, size=40).astype(np.int64)
    return (x[:9], y[:9]), x, (x[30:], y[30:])


def build(name, seed=0, **hyper):
    keras.utils.set_random_seed(seed)
    (x_l, y_l), x_u, _ = arrays(seed)
    model = getattr(methods, name)(classifier(seed), total_steps=6, num_train_examples=len(x_u), seed=seed,
                                   **hyper)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    return model, tf_advssl.data.ssl_dataset((x_l, y_l), x_u, batch_size=4, unlabeled_batch_size=8, seed=seed)


def values(variables):
    return [keras.ops.convert_to_numpy(v) for v in variables]


FIT_METHODS = sorted(name for name, path in methods.CLASSES.items() if name != "SCAR")


@pytest.mark.parametrize("name", FIT_METHODS)
def test_every_method_trains_with_fit_and_evaluates_in_percent(name):
    model, ds = build(name)
    before = values(model.classifier.trainable_variables)
    history = model.fit(ds, steps_per_epoch=STEPS, epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == STEPS
    assert set(model.loss_names) <= set(history.history)
    assert any(not np.array_equal(a, b) for a, b in zip(before, values(model.classifier.trainable_variables)))
    _, _, (x_test, y_test) = arrays()
    error = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["error"]
    predictions = np.argmax(model.predict(x_test, verbose=0), axis=1)
    assert error == pytest.approx(100.0 * np.mean(predictions != y_test))


@pytest.mark.parametrize("name", ["VAT", "XVAT", "AdvMixup", "FixMatch"])
def test_fit_runs_the_same_steps_as_bin_train(name):
    """bin/train.py's step function and ``model.fit`` run the same ``train_step`` on the same
    batches: three steps of each give the same weights."""
    fitted, ds = build(name)
    fitted.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)
    stepped, ds = build(name)
    steps = distribution.make_multi_step_function(stepped, tf.distribute.get_strategy())
    _, count = steps(iter(ds), tf.constant(3, tf.int32))
    assert int(count) == 3
    for a, b in zip(values(fitted.weights), values(stepped.weights)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class Interrupt(Exception):
    pass


class InterruptAfterEpoch(keras.callbacks.Callback):
    """Raise at the end of ``epoch`` (after the backup is written); keep the state then."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.weights = values(self.model.weights)
            self.optimizer_variables = values(self.model.optimizer.variables)
            raise Interrupt()


class StateAtStart(keras.callbacks.Callback):
    """The weights and optimizer state when training starts (after BackupAndRestore's restore)."""

    def on_train_begin(self, logs=None):
        self.weights = values(self.model.weights)
        self.optimizer_variables = values(self.model.optimizer.variables)


@pytest.mark.parametrize("name", ["VAT", "XVAT", "AdvMixup", "FixMatch"])
def test_backup_and_restore_resumes_every_variable(name, tmp_path):
    backup = str(tmp_path / "backup")
    model, ds = build(name)
    interrupt = InterruptAfterEpoch(1)
    with pytest.raises(Interrupt):
        model.fit(ds, steps_per_epoch=STEPS, epochs=3, verbose=0,
                  callbacks=[keras.callbacks.BackupAndRestore(backup), interrupt])

    resumed, ds = build(name)  # a fresh process would build the same model
    start = StateAtStart()
    history = resumed.fit(ds, steps_per_epoch=STEPS, epochs=3, verbose=0,
                          callbacks=[keras.callbacks.BackupAndRestore(backup), start])
    assert len(history.epoch) == 1 and int(resumed.optimizer.iterations) == 3 * STEPS
    assert len(start.weights) == len(interrupt.weights)
    for a, b in zip(start.weights + start.optimizer_variables, interrupt.weights + interrupt.optimizer_variables):
        np.testing.assert_array_equal(a, b)


def test_export_of_a_fitted_model_reloads_to_the_same_outputs(tmp_path):
    model, ds = build("VAT")
    model.fit(ds, steps_per_epoch=STEPS, epochs=1, verbose=0)
    path = export.export_saved_model(model, str(tmp_path / "export"))
    assert os.path.basename(path) == "1"
    _, _, (x_test, _) = arrays()
    served = tf.saved_model.load(path).signatures["serving_default"](inputs=tf.constant(x_test))
    expected = tf.nn.softmax(model.classifier(x_test, training=False)).numpy()
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-6)


def test_hyper_parameters_are_keyword_arguments():
    model = methods.VAT(classifier(), vat_eps=2.0, vat_weight=0.5)
    assert (model.params.vat_eps, model.params.vat_weight) == (2.0, 0.5)
    assert model.num_classes == 3 and model.data_shape == SHAPE
    with pytest.raises(TypeError, match="vat_eps"):  # the message lists the allowed names
        methods.VAT(classifier(), vat_epsilon=2.0)
    with pytest.raises(tf_advssl.config.ConfigError, match="vat_eps"):
        methods.VAT(classifier(), vat_eps=-1.0)


def test_a_ramp_up_without_total_steps_is_a_clear_error():
    keras.utils.set_random_seed(0)
    (x_l, y_l), x_u, _ = arrays()
    model = methods.MixMatch(classifier())
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="total_steps="):
        model.fit(tf_advssl.data.ssl_dataset((x_l, y_l), x_u, batch_size=4, unlabeled_batch_size=8),
                  steps_per_epoch=1, epochs=1, verbose=0)


def test_ssl_dataset_batches_and_bad_input():
    (x_l, y_l), x_u, _ = arrays()
    (xb, yb), (ub, idx) = next(iter(tf_advssl.data.ssl_dataset((x_l, y_l), x_u, batch_size=4,
                                                                unlabeled_batch_size=8, seed=3)))
    assert xb.shape == (4,) + SHAPE and xb.dtype == tf.float32 and ub.shape == (8,) + SHAPE
    for x, y, in zip(xb.numpy(), yb.numpy()):
        row = int(np.flatnonzero((x_l == x).all(axis=(1, 2, 3)))[0])
        assert y_l[row] == y
    np.testing.assert_array_equal(ub.numpy(), x_u[idx.numpy()])
    bad = x_u.copy()
    bad[5, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="unlabeled row 5"):
        tf_advssl.data.ssl_dataset((x_l, y_l), bad)
    with pytest.raises(ValueError, match="same number"):
        tf_advssl.data.ssl_dataset((x_l, y_l[:3]), x_u)


def load_example():
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "keras_fit.py")
    spec = importlib.util.spec_from_file_location("keras_fit_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["VAT", "XVAT", "AdvMixup", "FixMatch"])
def test_the_readme_example_runs_and_resumes(name, tmp_path):
    example = load_example()
    with pytest.raises(Interrupt):
        example.train(name, steps_per_epoch=2, epochs=2, workdir=str(tmp_path), callbacks=[InterruptAfterEpoch(0)])
    start = StateAtStart()
    model, error, path = example.train(name, steps_per_epoch=2, epochs=2, workdir=str(tmp_path), callbacks=[start])
    assert int(model.optimizer.iterations) == 4 and 0.0 <= error <= 100.0
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert not os.path.exists(os.path.join(str(tmp_path), "backup"))  # removed after the finished fit


def test_keras_callbacks_tensorboard_modelcheckpoint_earlystopping(tmp_path):
    model, ds = build("VAT")
    _, _, (x_test, y_test) = arrays()
    weights = str(tmp_path / "best.weights.h5")
    stop = keras.callbacks.EarlyStopping(monitor="val_error", mode="min", patience=1, min_delta=200.0)
    history = model.fit(ds, steps_per_epoch=STEPS, epochs=5, verbose=0, validation_data=(x_test, y_test),
                        callbacks=[keras.callbacks.TensorBoard(str(tmp_path / "tb")),
                                   keras.callbacks.ModelCheckpoint(weights, save_weights_only=True), stop])
    assert len(history.epoch) == 2 and stop.stopped_epoch == 1  # no epoch can improve by 200 points
    assert all(0.0 <= e <= 100.0 for e in history.history["val_error"])
    assert any(name.startswith("events") for _, _, files in os.walk(tmp_path / "tb") for name in files)
    reloaded, _ = build("VAT", seed=1)  # other initial weights
    reloaded.load_weights(weights)
    np.testing.assert_allclose(reloaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-6)


def test_augmentation_argument_is_applied_in_training():
    plain, ds = build("VAT")
    plain.fit(ds, steps_per_epoch=STEPS, epochs=1, verbose=0)
    shift = keras.Sequential([keras.layers.RandomTranslation(0.25, 0.25, seed=3)])
    augmented, ds = build("VAT", augmentation=shift)
    assert augmented.augmentation is shift
    augmented.fit(ds, steps_per_epoch=STEPS, epochs=1, verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(values(plain.classifier.weights),
                                                     values(augmented.classifier.weights)))
