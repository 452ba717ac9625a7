"""The generative baselines (semi-supervised AAE, feature-matching GAN) on tiny models.

Losses are recomputed in numpy from fixed weights; each phase of a train_step
is checked to move only its own networks; a discriminator update is checked
against a finite-difference gradient of the numpy loss with the generated
samples held fixed.
"""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import data as data_lib
from tf_advssl import runs, training
from tf_advssl.config import ConfigError
from tf_advssl.layers import frozen_batch_stats
from tf_advssl.methods import get_method, make_params

W = np.array([[0.8, -0.4], [-0.3, 0.6], [0.5, 0.1]])
B = np.array([0.1, -0.2])


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softplus(v):
    return np.logaddexp(0.0, v)


def cross_entropy(labels, logits):
    return -np.log(softmax(logits)[np.arange(len(labels)), labels])


def log_sum_exp(logits):
    return np.log(np.exp(logits).sum(axis=-1))


def relu(v):
    return np.maximum(v, 0.0)


def dense_stack(model):
    """The Dense layers of a (nested) keras model, in order."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers += dense_stack(layer)
        elif isinstance(layer, keras.layers.Dense):
            layers.append(layer)
    return layers


def mlp_forward(model, x, weights=None):
    """Dense-ReLU layers, linear last layer (the MLPs of the AAE), in numpy."""
    layers = dense_stack(model)
    weights = weights if weights is not None else [w for layer in layers for w in layer.get_weights()]
    for i in range(len(layers)):
        x = x @ weights[2 * i] + weights[2 * i + 1]
        if i < len(layers) - 1:
            x = relu(x)
    return x


def set_known_weights(model, rng):
    """Fixed random kernels and positive biases (so that the ReLUs are active)."""
    for layer in dense_stack(model):
        kernel, bias = layer.get_weights()
        layer.set_weights([rng.normal(scale=0.7, size=kernel.shape).astype(np.float32),
                           rng.uniform(0.3, 0.8, size=bias.shape).astype(np.float32)])


def vector_batch(rng, num_labeled=4, num_unlabeled=6, dim=3, num_classes=2):
    x_l = rng.normal(size=(num_labeled, dim)).astype(np.float32)
    y_l = rng.randint(0, num_classes, size=num_labeled).astype(np.int64)
    x_u = rng.normal(size=(num_unlabeled, dim)).astype(np.float32)
    return (x_l, y_l), (x_u, np.arange(num_unlabeled, dtype=np.int64))


def build(method, overrides, classifier, lr=0.1, seed=0, **kwargs):
    params = make_params(method, "two_circles", overrides)
    model = get_method(method)(classifier, params, num_classes=classifier.output_shape[-1], total_steps=10,
                               seed=seed, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(lr))
    model.optimizer.build(model.trainable_for_loss())
    return model


def numeric_gradient(loss, arrays, eps=1e-6):
    grads = []
    for k, array in enumerate(arrays):
        grad = np.zeros_like(array, dtype=np.float64)
        for index in np.ndindex(array.shape):
            for sign in (1.0, -1.0):
                shifted = [a.astype(np.float64).copy() for a in arrays]
                shifted[k][index] += sign * eps
                grad[index] += sign * loss(shifted) / (2 * eps)
        grads.append(grad)
    return grads


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def changed(before, variables):
    return [not np.allclose(b, v.numpy()) for b, v in zip(before, variables)]


# ----- AAE -----------------------------------------------------------------------------

def linear_classifier():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.layers[0].set_weights([W.astype(np.float32), B.astype(np.float32)])
    return model


def aae(seed=0, lr=0.1):
    model = build("aae", {"aae_style_dim": 1, "aae_hidden_units": 3, "aae_prior_std": 1.5},
                  linear_classifier(), lr=lr, seed=seed)
    rng = np.random.RandomState(11)
    for part in (model.decoder, model.categorical_discriminator, model.style_discriminator):
        set_known_weights(part, rng)
    style = model.encoder.get_layer("aae_style")
    style.set_weights([np.array([[0.4], [-0.9], [0.3]], np.float32), np.array([0.2], np.float32)])
    return model


def aae_codes(x):
    return softmax(x @ W + B), x @ np.array([[0.4], [-0.9], [0.3]]) + 0.2


def aae_discriminator_loss_by_hand(model, x, y_prior, z_prior, weights=None):
    y, z = aae_codes(x)
    split = len(dense_stack(model.categorical_discriminator)) * 2
    cat_weights, style_weights = (None, None) if weights is None else (weights[:split], weights[split:])
    cat = lambda v: mlp_forward(model.categorical_discriminator, v, cat_weights)  # noqa: E731
    sty = lambda v: mlp_forward(model.style_discriminator, v, style_weights)  # noqa: E731
    return (softplus(-cat(y_prior)).mean() + softplus(cat(y)).mean()
            + softplus(-sty(z_prior)).mean() + softplus(sty(z)).mean())


def test_aae_phase_losses_by_hand():
    rng = np.random.RandomState(12)
    (x_l, y_l), (x_u, _) = vector_batch(rng)
    y_prior = np.eye(2)[[0, 1, 1, 0, 1, 0]].astype(np.float32)
    z_prior = rng.normal(size=(6, 1)).astype(np.float32)
    model = aae()
    y, z = aae_codes(x_u)
    reconstruction = mlp_forward(model.decoder, np.concatenate([y, z], axis=1))
    assert float(model.reconstruction_loss(x_u)) == pytest.approx(np.mean((x_u - reconstruction) ** 2), rel=1e-5)
    assert float(model.discriminator_loss(x_u, y_prior, z_prior)) == pytest.approx(
        aae_discriminator_loss_by_hand(model, x_u, y_prior, z_prior), rel=1e-5)
    cat = mlp_forward(model.categorical_discriminator, y)
    sty = mlp_forward(model.style_discriminator, z)
    assert float(model.generator_loss(x_u)) == pytest.approx(softplus(-cat).mean() + softplus(-sty).mean(),
                                                             rel=1e-5)
    assert float(model.classification_loss(x_l, y_l)) == pytest.approx(
        cross_entropy(y_l, x_l @ W + B).mean(), rel=1e-5)


def test_aae_prior_samples_are_one_hot_and_gaussian_and_seeded():
    samples = [aae(seed=seed).sample_prior(2000) for seed in (1, 1, 2)]
    y, z = (s.numpy() for s in samples[0])
    np.testing.assert_array_equal(y.sum(axis=1), 1.0)
    assert 0.45 < y[:, 0].mean() < 0.55
    assert z.std() == pytest.approx(1.5, rel=0.1) and abs(z.mean()) < 0.15
    np.testing.assert_array_equal(samples[0][1].numpy(), samples[1][1].numpy())
    assert not np.array_equal(samples[0][1].numpy(), samples[2][1].numpy())


@pytest.mark.parametrize("phase", ["reconstruction", "discriminator", "generator", "classification"])
def test_aae_each_phase_moves_only_its_networks(phase):
    model = aae()
    optimizers = {"reconstruction": "reconstruction_optimizer", "discriminator": "discriminator_optimizer",
                  "generator": "generator_optimizer"}
    for name, attribute in optimizers.items():
        setattr(model, attribute, keras.optimizers.SGD(0.5 if name == phase else 0.0))
    if phase != "classification":
        model.optimizer.learning_rate = 0.0
    parts = {"classifier": model.classifier.trainable_variables,
             "style head": model.encoder.get_layer("aae_style").trainable_variables,
             "decoder": model.decoder.trainable_variables,
             "discriminators": model.discriminator_variables()}
    before = {name: snapshot(variables) for name, variables in parts.items()}
    logs = model.train_step(vector_batch(np.random.RandomState(13)))
    assert set(logs) == set(model.loss_names) | {"loss"}
    moved = {name for name, variables in parts.items() if any(changed(before[name], variables))}
    expected = {"reconstruction": {"classifier", "style head", "decoder"},
                "discriminator": {"discriminators"},
                "generator": {"classifier", "style head"},
                "classification": {"classifier"}}[phase]
    assert moved == expected


def test_aae_discriminator_update_is_the_gradient_of_its_loss_with_codes_fixed():
    (x_l, y_l), (x_u, idx) = vector_batch(np.random.RandomState(14))
    model = aae()
    model.reconstruction_optimizer = keras.optimizers.SGD(0.0)
    model.generator_optimizer = keras.optimizers.SGD(0.0)
    model.discriminator_optimizer = keras.optimizers.SGD(0.5)
    reference = keras.random.SeedGenerator(0)
    reference.state.assign(model.seed_generator.state.numpy())
    # train_step's first random draws are the prior samples of the regularization phase.
    classes = keras.random.randint((6,), 0, 2, seed=reference).numpy()
    z_prior = 1.5 * keras.random.normal((6, 1), seed=reference).numpy()
    y_prior = np.eye(2)[classes]
    weights = [w.astype(np.float64) for w in snapshot(model.discriminator_variables())]
    gradient = numeric_gradient(lambda ws: aae_discriminator_loss_by_hand(model, x_u, y_prior, z_prior, ws), weights)
    model.train_step(((x_l, y_l), (x_u, idx)))
    for before, grad, variable in zip(weights, gradient, model.discriminator_variables()):
        np.testing.assert_allclose(variable.numpy(), before - 0.5 * grad, atol=2e-5)
    assert max(np.abs(g).max() for g in gradient) > 1e-3


def test_aae_same_seed_same_step():
    batch = vector_batch(np.random.RandomState(15))
    runs = []
    for seed in (3, 3, 4):
        model = aae(seed=seed)
        runs.append({k: float(v) for k, v in model.train_step(batch).items()})
    assert runs[0] == runs[1]
    assert runs[0]["loss_discriminator"] != runs[2]["loss_discriminator"]


# ----- feature-matching GAN -------------------------------------------------------------

W1 = np.array([[0.5, -0.2, 0.3, 0.1], [-0.4, 0.6, 0.2, -0.3], [0.2, 0.1, -0.5, 0.4]])
B1 = np.array([0.05, -0.1, 0.2, 0.0])
W2 = np.array([[0.7, -0.3], [-0.2, 0.5], [0.4, 0.4], [-0.6, 0.1]])
B2 = np.array([0.1, -0.05])


def two_layer_classifier():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)])
    model.layers[0].set_weights([W1.astype(np.float32), B1.astype(np.float32)])
    model.layers[1].set_weights([W2.astype(np.float32), B2.astype(np.float32)])
    return model


def fm_gan(seed=0, lr=0.1):
    return build("fm_gan", {"fm_gan_noise_dim": 2, "fm_gan_hidden_units": 5}, two_layer_classifier(),
                 lr=lr, seed=seed)


def fm_discriminator_loss_by_hand(x_l, y_l, x_u, x_fake, w1=W1, b1=B1, w2=W2, b2=B2, weight=0.5):
    logits = lambda x: relu(x @ w1 + b1) @ w2 + b2  # noqa: E731
    lse_real, lse_fake = log_sum_exp(logits(x_u)), log_sum_exp(logits(x_fake))
    unlabeled = np.mean(softplus(lse_real) - lse_real) + np.mean(softplus(lse_fake))
    return cross_entropy(y_l, logits(x_l)).mean(), unlabeled


def test_fm_gan_losses_by_hand():
    rng = np.random.RandomState(16)
    (x_l, y_l), (x_u, _) = vector_batch(rng)
    x_fake = rng.normal(size=(5, 3)).astype(np.float32)
    model = fm_gan()
    nll, unlabeled = model.discriminator_losses(x_l, y_l, x_u, x_fake)
    nll_hand, unlabeled_hand = fm_discriminator_loss_by_hand(x_l, y_l, x_u, x_fake)
    assert float(nll) == pytest.approx(nll_hand, rel=1e-5)
    assert float(unlabeled) == pytest.approx(unlabeled_hand, rel=1e-5)
    # -log D(x) with D = Z / (Z + 1): the (K+1)-th logit is the constant 0.
    z_real = np.exp(relu(x_u @ W1 + B1) @ W2 + B2).sum(axis=1)
    z_fake = np.exp(relu(x_fake @ W1 + B1) @ W2 + B2).sum(axis=1)
    assert unlabeled_hand == pytest.approx(np.mean(-np.log(z_real / (z_real + 1)))
                                           + np.mean(-np.log(1 / (z_fake + 1))), rel=1e-9)
    feature_gap = relu(x_u @ W1 + B1).mean(axis=0) - relu(x_fake @ W1 + B1).mean(axis=0)
    assert float(model.feature_matching_loss(x_u, x_fake)) == pytest.approx(np.mean(feature_gap ** 2), rel=1e-5)


def fixed_noise_fm_gan(z, main_lr, generator_lr):
    model = fm_gan(lr=main_lr)
    model.generator_optimizer = keras.optimizers.SGD(generator_lr)
    model.sample_noise = lambda n: tf.constant(z)
    return model


def test_fm_gan_discriminator_step_is_its_gradient_and_leaves_the_generator():
    rng = np.random.RandomState(17)
    (x_l, y_l), (x_u, idx) = vector_batch(rng)
    z = rng.uniform(size=(6, 2)).astype(np.float32)
    model = fixed_noise_fm_gan(z, main_lr=0.5, generator_lr=0.0)
    with frozen_batch_stats():
        x_fake = model.generator(z, training=True).numpy()
    generator_before = snapshot(model.generator.trainable_variables)

    def loss(ws):
        nll, unlabeled = fm_discriminator_loss_by_hand(x_l, y_l, x_u, x_fake, *ws)
        return nll + 0.5 * unlabeled

    weights = [W1, B1, W2, B2]
    gradient = numeric_gradient(loss, weights)
    model.train_step(((x_l, y_l), (x_u, idx)))
    for before, grad, variable in zip(weights, gradient, model.classifier.trainable_variables):
        np.testing.assert_allclose(variable.numpy(), before - 0.5 * grad, atol=2e-5)
    assert not any(changed(generator_before, model.generator.trainable_variables))


def test_fm_gan_generator_step_lowers_feature_matching_and_leaves_the_discriminator():
    rng = np.random.RandomState(18)
    batch = vector_batch(rng)
    z = rng.uniform(size=(6, 2)).astype(np.float32)
    model = fixed_noise_fm_gan(z, main_lr=0.0, generator_lr=0.01)
    x_u = batch[1][0]

    def feature_matching():
        with frozen_batch_stats():
            return float(model.feature_matching_loss(x_u, model.generator(z, training=True)))

    before_loss = feature_matching()
    classifier_before = snapshot(model.classifier.trainable_variables)
    generator_before = snapshot(model.generator.trainable_variables)
    logs = model.train_step(batch)
    assert float(logs["loss_feature_matching"]) == pytest.approx(before_loss, rel=1e-5)
    assert feature_matching() < before_loss
    assert all(changed(generator_before, model.generator.trainable_variables))
    assert not any(changed(classifier_before, model.classifier.trainable_variables))


def test_fm_gan_same_seed_same_step():
    batch = vector_batch(np.random.RandomState(19))
    runs = [{k: float(v) for k, v in fm_gan(seed=seed).train_step(batch).items()} for seed in (5, 5, 6)]
    assert runs[0] == runs[1]
    assert runs[0]["loss_unlabeled"] != runs[2]["loss_unlabeled"]


def test_fm_gan_conv_generator_shapes_and_size_check():
    classifier = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model = build("fm_gan", {"fm_gan_generator": "conv", "fm_gan_noise_dim": 4}, classifier, input_shape=(8, 8, 1))
    assert model.generate(5).shape == (5, 8, 8, 1)
    odd = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ConfigError, match="--fm_gan_generator=conv"):
        build("fm_gan", {"fm_gan_generator": "conv"}, odd, input_shape=(6, 6, 1))


# ----- run-directory integration --------------------------------------------------------

def fake_data(shape, num_classes=2, n=40):
    rng = np.random.RandomState(20)
    is_image = len(shape) == 3
    x = (rng.randint(0, 256, size=(n,) + shape).astype(np.uint8) if is_image
         else rng.normal(size=(n,) + shape).astype(np.float32))
    y = rng.randint(0, num_classes, size=n).astype(np.int64)
    spec = data_lib.DataSpec(name="fake", input_shape=shape, num_classes=num_classes,
                             raw_dtype="uint8" if is_image else "float32",
                             pixel_range=(0, 255) if is_image else None, is_image=is_image)
    preprocessor = data_lib.Preprocessor(scale=1 / 255 if is_image else 1.0, input_shape=shape)
    return data_lib.SSLData(spec=spec, x_train=x, y_train=y, x_test=x, y_test=y, x_val=None, y_val=None,
                            labeled_indices=np.arange(4), preprocessor=preprocessor)


def test_write_artifacts(tmp_path, saved_figures):
    vectors = fake_data((3,))
    aae().write_artifacts(str(tmp_path), vectors)
    assert os.path.isfile(tmp_path / "aae_samples.png")
    panels = saved_figures[tmp_path / "aae_samples.png"].axes  # vectors: one scatter per panel, same limits
    assert [ax.get_title() for ax in panels] == ["test inputs", "reconstructions",
                                                 "samples dec(one_hot(k), z), coloured by k"]
    assert all(len(ax.collections) == 1 for ax in panels)
    inputs, reconstructions, samples = (ax.collections[0] for ax in panels)
    np.testing.assert_allclose(inputs.get_offsets(), vectors.x_test[:, :2], atol=1e-6)  # first two features
    assert len(reconstructions.get_offsets()) == len(vectors.x_test)
    assert not np.allclose(reconstructions.get_offsets(), inputs.get_offsets())
    np.testing.assert_array_equal(inputs.get_array(), vectors.y_test)  # coloured by label
    np.testing.assert_array_equal(reconstructions.get_array(), vectors.y_test)
    np.testing.assert_array_equal(samples.get_array(), np.repeat([0, 1], 50))  # 50 samples per class
    assert len(samples.get_offsets()) == 100
    assert len({ax.get_xlim() for ax in panels}) == 1 and len({ax.get_ylim() for ax in panels}) == 1

    classifier = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model = build("fm_gan", {"fm_gan_generator": "conv", "fm_gan_noise_dim": 4}, classifier, input_shape=(8, 8, 1))
    images = fake_data((8, 8, 1))
    model.write_artifacts(str(tmp_path), images)
    assert os.path.isfile(tmp_path / "fm_gan_samples.png")
    panels = saved_figures[tmp_path / "fm_gan_samples.png"].axes  # images: one tiled canvas per panel
    assert [ax.get_title() for ax in panels] == ["unlabeled data", "generator samples"]
    assert all(len(ax.images) == 1 for ax in panels)
    data_canvas, sample_canvas = (np.asarray(ax.images[0].get_array()) for ax in panels)
    # 10 images of 8 x 8 per row, a 1-pixel gap after each: the 40 training images, 100 samples
    assert data_canvas.shape == (4 * 9, 10 * 9) and sample_canvas.shape == (10 * 9, 10 * 9)
    x = images.x_train / 255.0
    expected = (x - x.min()) / (x.max() - x.min() + 1e-8)
    np.testing.assert_allclose(data_canvas[9:17, 18:26], expected[12, :, :, 0], atol=1e-5)  # row 1, column 2
    assert np.all(data_canvas[8, :] == 1.0) and np.all(data_canvas[:, 8] == 1.0)  # white gaps


@pytest.mark.parametrize("make_model", [aae, fm_gan])
def test_checkpoint_holds_the_extra_optimizers(tmp_path, make_model):
    trained = make_model()
    trained.train_step(vector_batch(np.random.RandomState(21)))
    path = runs.checkpoint_for(trained).save(str(tmp_path / "ckpt"))
    fresh = make_model()
    runs.checkpoint_for(fresh).restore(path).assert_consumed()
    for optimizer_trained, optimizer_fresh in zip(trained.extra_optimizers(), fresh.extra_optimizers()):
        assert int(optimizer_fresh.iterations.numpy()) == 1
        for a, b in zip(optimizer_trained.variables, optimizer_fresh.variables):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(trained.variables, fresh.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ----- FM-GAN with the paper's MNIST discriminator (mlp_wn) -------------------------------

@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_fm_gan_uses_the_papers_discriminator_on_mnist_unless_told_otherwise(dataset):
    from tf_advssl.config import Config

    paper = training.validate(Config(method="fm_gan", dataset=dataset))
    assert paper.network == "mlp_wn" and paper.mlp_widths == (1000, 500, 250, 250, 250)
    assert (paper.mlp_wn_input_noise, paper.mlp_wn_hidden_noise) == (0.3, 0.5)
    # The network adds the input noise, so FM-GAN adds none (not twice).
    assert paper.method_params["fm_gan_input_noise"] == 0.0
    # An explicit --network wins, and FM-GAN then adds the paper's input noise itself.
    explicit = training.validate(Config(method="fm_gan", dataset=dataset, network="mlp"))
    assert explicit.network == "mlp" and explicit.mlp_widths == (1200, 600, 300, 150, 150)
    assert explicit.mlp_wn_input_noise is None and explicit.method_params["fm_gan_input_noise"] == 0.3
    # Explicit widths, noise and FM-GAN noise flags win too.
    custom = training.validate(Config(method="fm_gan", dataset=dataset, mlp_widths=(20, 10), mlp_wn_hidden_noise=0.2,
                                      method_params={"fm_gan_input_noise": 0.1}))
    assert (custom.network, custom.mlp_widths, custom.mlp_wn_input_noise, custom.mlp_wn_hidden_noise) == (
        "mlp_wn", (20, 10), 0.3, 0.2)
    assert custom.method_params["fm_gan_input_noise"] == 0.1
    # Other methods keep the dataset's network; mlp_wn on request gets its own widths.
    assert training.validate(Config(method="vat", dataset=dataset)).network == "mlp"
    vat_wn = training.validate(Config(method="vat", dataset=dataset, network="mlp_wn"))
    assert vat_wn.mlp_widths == (1000, 500, 250, 250, 250)
    # fm_gan elsewhere: the dataset's network.
    assert training.validate(Config(method="fm_gan", dataset="two_circles")).network == "mlp"


def test_mlp_wn_noise_flags_need_mlp_wn():
    from tf_advssl.config import Config

    with pytest.raises(ConfigError, match="--mlp_wn_input_noise applies to --network=mlp_wn"):
        training.validate(Config(method="fm_gan", dataset="mnist", network="mlp", mlp_wn_input_noise=0.3))
    with pytest.raises(ConfigError, match="--mlp_wn_hidden_noise must be >= 0"):
        training.validate(Config(method="fm_gan", dataset="mnist", mlp_wn_hidden_noise=-1.0))


def mlp_wn_fm_gan(network):
    """FM-GAN with the params it gets on MNIST for ``network`` and a small mlp_wn discriminator
    (noise std 0.3 on the inputs, 0.5 after each hidden ReLU)."""
    from tf_advssl import networks

    classifier = networks.build_network("mlp_wn", (3,), 2, mlp_widths=(6, 5), seed=1)
    params = make_params("fm_gan", "mnist", {"fm_gan_noise_dim": 2, "fm_gan_hidden_units": 5,
                                             "fm_gan_output": "linear"}, network=network)
    model = get_method("fm_gan")(classifier, params, num_classes=2, total_steps=10, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.optimizer.build(model.trainable_for_loss())
    return model


def test_fm_gan_does_not_add_input_noise_to_a_network_that_has_its_own():
    x = np.random.RandomState(30).normal(size=(50, 3)).astype(np.float32)
    model = mlp_wn_fm_gan("mlp_wn")
    assert model.params.fm_gan_input_noise == 0.0
    np.testing.assert_array_equal(model.noisy(x).numpy(), x)  # FM-GAN adds nothing ...
    # ... so what the first dense layer sees in the discriminator pass (FM-GAN's noisy(), then
    # the network) carries noise of std 0.3 once, not sqrt(2) * 0.3 = 0.42 as if added twice.
    first_dense_input = keras.Model(model.classifier.inputs, model.classifier.get_layer("input_noise").output)
    big = np.zeros((4000, 3), np.float32)
    assert np.std(first_dense_input(model.noisy(big), training=True).numpy()) == pytest.approx(0.3, rel=0.03)
    # Where the network has no input noise (e.g. --network=mlp), FM-GAN adds the paper's 0.3.
    other = mlp_wn_fm_gan("mlp")
    assert other.params.fm_gan_input_noise == 0.3
    assert np.std(other.noisy(big).numpy()) == pytest.approx(0.3, rel=0.03)


def test_fm_gan_matches_the_last_hidden_relu_of_mlp_wn_before_its_noise():
    """As the official code (``layers[-3]``): the features are the last hidden layer's ReLU
    output, taken in noisy training mode, not the noisy input of the logits layer."""
    model = mlp_wn_fm_gan("mlp_wn")
    classifier = model.classifier
    assert model.features.outputs[0] is classifier.get_layer("relu1").output
    assert classifier.layers[-1].input is classifier.get_layer("noise1").output  # what is skipped
    x = np.random.RandomState(31).uniform(size=(200, 3)).astype(np.float32)
    train_features = model.features(x, training=True).numpy()
    assert train_features.shape == (200, 5)
    assert train_features.min() >= 0.0                          # post-ReLU: no noise after it
    logits_input = keras.Model(classifier.inputs, classifier.layers[-1].input)(x, training=True).numpy()
    assert logits_input.min() < -0.5                             # the noisy version would have negatives
    # Noise before it is active in training (input and first hidden noise), absent in inference.
    assert not np.allclose(train_features, model.features(x, training=False).numpy())
    # One train step runs and moves both networks.
    batch = vector_batch(np.random.RandomState(32))
    before_d, before_g = snapshot(classifier.trainable_variables), snapshot(model.generator.trainable_variables)
    logs = model.train_step(batch)
    assert all(np.isfinite(float(v)) for v in logs.values())
    assert any(changed(before_d, classifier.trainable_variables))
    assert any(changed(before_g, model.generator.trainable_variables))
