"""The training run: resumption, determinism, export, NaN handling, bad input."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import data as data_lib
from tf_advssl import export, optimizers, runs, training
from tf_advssl.config import Config, ConfigError


def tiny_config(workdir, **changes):
    values = dict(workdir=str(workdir), train_steps=24, checkpoint_every=8, eval_every=12, log_every=4,
                  verbose=0, num_train_synthetic=200, num_test_synthetic=100, unlabeled_batch_size=32,
                  mlp_widths=(16, 8), export=False)
    values.update(changes)
    return Config(**values)


def final_weights(workdir):
    model = runs.restore_model(str(workdir))[0]
    return [v.numpy() for v in model.variables]


def comparable(metrics):
    return {k: v for k, v in metrics.items() if k not in ("wall_time_s", "steps_per_second", "export_path")}


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    config = tiny_config(tmp_path / "a", mlp_batch_norm=True)
    uninterrupted = training.run(config)
    interrupted = training.run(config.replace(workdir=str(tmp_path / "b")), stop_after=13)
    assert interrupted["interrupted"] and interrupted["train_steps"] == 13
    assert tf.train.latest_checkpoint(str(tmp_path / "b" / "checkpoints")).endswith("-8")
    resumed = training.run(config.replace(workdir=str(tmp_path / "b")))
    assert comparable(resumed) == comparable(uninterrupted)
    for a, b in zip(final_weights(tmp_path / "a"), final_weights(tmp_path / "b")):
        np.testing.assert_array_equal(a, b)


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    first = training.run(tiny_config(tmp_path / "a"))
    second = training.run(tiny_config(tmp_path / "b"))
    other = training.run(tiny_config(tmp_path / "c", seed=1))
    assert comparable(first) == comparable(second)
    assert first["loss_terms"] != other["loss_terms"]


def test_metrics_file_contents(tmp_path):
    training.run(tiny_config(tmp_path, method="at"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test_error", "train_steps", "wall_time_s", "steps_per_second"):
        assert key in metrics
    assert set(metrics["loss_terms"]) == {"loss_nll", "loss_adv", "loss"}
    assert 0.0 <= metrics["test_error"] <= 100.0 and metrics["train_steps"] == 24
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["method_params"]["at_norm"] == "linf" and config["network"] == "mlp"
    assert any(name.startswith("events") for name in os.listdir(tmp_path / "tensorboard"))


def test_finished_run_is_not_retrained(tmp_path):
    config = tiny_config(tmp_path)
    first = training.run(config)
    mtime = os.path.getmtime(tmp_path / "metrics.json")
    assert training.run(config) == first
    assert os.path.getmtime(tmp_path / "metrics.json") == mtime


def test_different_config_in_workdir_is_refused_unless_overwrite(tmp_path):
    training.run(tiny_config(tmp_path, export=True))
    with pytest.raises(ConfigError, match="different config.*train_steps.*--overwrite"):
        training.run(tiny_config(tmp_path, train_steps=30))
    metrics = training.run(tiny_config(tmp_path, train_steps=30, overwrite=True, export=True))
    assert metrics["train_steps"] == 30
    assert sorted(os.listdir(tmp_path / "export")) == ["1", "2"]  # earlier export kept


def test_export_reloads_to_same_outputs_and_versions(tmp_path):
    metrics = training.run(tiny_config(tmp_path, export=True))
    assert metrics["export_path"] == str(tmp_path / "export" / "1")
    model, config, spec, preprocessor = runs.restore_model(str(tmp_path))
    data = data_lib.load(training.validate(config))
    raw = data.x_test[:50]
    expected = tf.nn.softmax(model.classifier(preprocessor(raw), training=False)).numpy()
    served = tf.saved_model.load(metrics["export_path"]).signatures["serving_default"](inputs=tf.constant(raw))
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(served["classes"].numpy(), expected.argmax(axis=1))
    assert export.next_version(str(tmp_path / "export")) == 2
    with pytest.raises(FileExistsError, match="already exists"):
        export.export_saved_model(model, str(tmp_path / "export"), spec=spec, preprocessor=preprocessor, version=1)
    assert export.export_saved_model(model, str(tmp_path / "export"), spec=spec,
                                     preprocessor=preprocessor).endswith("2")


def test_nan_stops_training_naming_term_and_step_and_keeps_checkpoint(tmp_path, monkeypatch):
    from tf_advssl.methods.vat import VAT

    original = VAT.compute_losses

    def poisoned(self, *args):
        terms = original(self, *args)
        terms["loss_vat"] = tf.where(self.step >= 10, np.float32(np.nan), terms["loss_vat"])
        return terms

    monkeypatch.setattr(VAT, "compute_losses", poisoned)
    with pytest.raises(training.TrainingDivergedError, match="'loss_vat' is nan at step 11"):
        training.run(tiny_config(tmp_path))
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("-8")
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("changes,message", [
    (dict(dataset="imagenet_nonexistent"), "--dataset"),
    (dict(num_labeled=5000), "--num_labeled"),
    (dict(num_labeled=9), "--num_labeled.*multiple|--num_labeled.*2 classes|--num_labeled"),
    (dict(method_params={"vat_eps": -1.0}), "--vat_eps must be >= 0"),
    (dict(optimizer="rmsprop"), "--optimizer.*adam, adamw, sgd"),
    (dict(train_steps=0), "--train_steps"),
    (dict(lr_schedule="step"), "--lr_schedule.*exponential"),
    (dict(lr_schedule="exponential", lr_decay_rate=1.5), "--lr_decay_rate must be in"),
    (dict(bn_recalibration_examples=0), "--bn_recalibration_examples must be >= 1"),
    (dict(wn_data_init=-1), "--wn_data_init must be >= 0"),
    (dict(dataset="mnist", data_dir="EMPTY"), "--tfds_manual_dir"),
    (dict(batch_size=0), "--batch_size must be > 0"),
    (dict(unlabeled_batch_size=-1), "--unlabeled_batch_size must be > 0"),
    (dict(eval_batch_size=0), "--eval_batch_size must be > 0"),
])
def test_bad_input_fails_before_any_work(tmp_path, changes, message):
    if changes.get("data_dir") == "EMPTY":
        changes = dict(changes, data_dir=str(tmp_path / "tfds"))
    with pytest.raises(ConfigError, match=message):
        training.run(tiny_config(tmp_path / "run", **changes))
    assert not (tmp_path / "run").exists()


def test_resolved_default_batch_sizes_are_positive():
    """Batch sizes are checked before resolve() (data.validate); its defaults need no check."""
    from tf_advssl import methods
    from tf_advssl.config import DATASET_DEFAULTS
    from tf_advssl.methods import resolve

    for method in methods.METHODS:
        for dataset in DATASET_DEFAULTS:
            config = resolve(Config(method=method, dataset="other" if dataset == "default" else dataset))
            for name in ("batch_size", "unlabeled_batch_size", "eval_batch_size"):
                assert getattr(config, name) > 0, (method, dataset, name)


@pytest.mark.parametrize("schedule,expected", [
    # official VAT: constant for 2/3 of training, then linearly to 0 at the last step
    ("vat_linear", {0: 1e-3, 666: 1e-3, 800: 0.6e-3, 900: 0.3e-3, 1000: 0.0}),
    # official VAT MNIST: x0.9 after every 100 steps here (staircase)
    ("exponential", {0: 1e-3, 99: 1e-3, 100: 0.9e-3, 250: 0.81e-3, 1000: 1e-3 * 0.9 ** 10}),
])
def test_learning_rate_schedules(schedule, expected):
    config = Config(lr_schedule=schedule, learning_rate=1e-3, train_steps=1000, lr_decay_steps=100, lr_decay_rate=0.9)
    optimizer = optimizers.build_optimizer(config)
    for step, lr in expected.items():
        assert float(optimizer._learning_rate(step)) == pytest.approx(lr, rel=1e-5, abs=1e-12), step


def test_weight_norm_data_init_before_the_first_step_only_for_weight_norm_networks(tmp_path):
    from tf_advssl import layers as advssl_layers

    """mlp_wn: the first layer's outputs are standardised on the seeded subset of training
    inputs (and the teacher starts as that copy); an mlp has nothing to set; 0 turns it off."""
    config = training.validate(tiny_config(tmp_path, network="mlp_wn", wn_data_init=50, eval_ema=True))
    data = data_lib.load(config)
    model = runs.build_model(config, data.spec, len(data.x_train))
    assert training.weight_norm_data_init(model, data, config) == 3
    indices = np.sort(np.random.default_rng(config.seed + 7 + 4).permutation(len(data.x_train))[:50])
    first = advssl_layers.layers_of(model.classifier, advssl_layers.WEIGHT_NORM_LAYERS)[0]
    assert first.units == 16
    pre = first(data.preprocessor(data.x_train[indices])).numpy()
    np.testing.assert_allclose(pre.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(pre.std(axis=0), 1.0, rtol=1e-3)
    for a, b in zip(model.classifier.weights, model.teacher.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert training.weight_norm_data_init(model, data, config.replace(wn_data_init=0)) == 0
    plain = training.validate(tiny_config(tmp_path, network="mlp"))
    assert training.weight_norm_data_init(runs.build_model(plain, data.spec, len(data.x_train)), data, plain) == 0


def test_bn_recalibration_after_training_is_checkpointed(tmp_path):
    """With --bn_recalibration the saved model's BN statistics are those of recalibrating the
    same trained model (trained without it) on the seeded subset of training inputs; the
    trainable weights are the same, and the statistics differ from the training-time ones."""
    from tf_advssl.layers import recalibrate_batch_norm

    config = tiny_config(tmp_path / "off", mlp_batch_norm=True, bn_recalibration=False,
                         bn_recalibration_examples=50, eval_ema=True)
    off = training.run(config)
    on = training.run(config.replace(workdir=str(tmp_path / "on"), bn_recalibration=True))
    model_off, _, _, _ = runs.restore_model(str(tmp_path / "off"))
    model_on, _, _, _ = runs.restore_model(str(tmp_path / "on"))

    data = data_lib.load(training.validate(config))
    indices = np.random.default_rng(config.seed + 7).permutation(len(data.x_train))[:50]
    for network in (model_off.classifier, model_off.teacher):  # batches of 32 + 18
        assert recalibrate_batch_norm(network, data_lib.input_batches(data, indices, 32)) == 2
    stats = lambda m: [v.numpy() for v in m.non_trainable_variables if "moving" in v.path]
    for a, b in zip(model_off.trainable_variables, model_on.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(stats(model_on)) == 2 * 2 * 2  # classifier + teacher, 2 BN layers, mean + variance
    for a, b in zip(stats(model_off), stats(model_on)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert on["loss_terms"] == off["loss_terms"]
    trained = runs.restore_model(str(tmp_path / "off"))[0]
    assert not all(np.allclose(a, b) for a, b in zip(stats(trained), stats(model_on)))
