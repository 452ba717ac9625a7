"""Tests for tf_advssl.networks and the weight-normalised layers in tf_advssl.layers."""
from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import layers as advssl_layers
from tf_advssl import networks
from tf_advssl.config import ConfigError

MNIST = (28, 28, 1)
CIFAR = (32, 32, 3)


@functools.lru_cache(maxsize=None)
def _built(name, input_shape, num_classes=10):
    """Cache default-argument builds (float32 policy) to keep the file fast."""
    return networks.build_network(name, input_shape, num_classes)


def _non_input_layers(model):
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _rand(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


# ---------------------------------------------------------------------------
# Shapes, dtypes, registry
# ---------------------------------------------------------------------------

def test_registry_names():
    assert set(networks.NETWORKS) == {"mlp", "mlp_wn", "conv_small", "conv_large", "lenet", "wrn28_2"}


@pytest.mark.parametrize("input_shape", [MNIST, CIFAR], ids=["mnist", "cifar"])
@pytest.mark.parametrize("name", ["mlp", "mlp_wn", "conv_small", "conv_large", "lenet", "wrn28_2"])
def test_output_shape_and_float32_logits(name, input_shape):
    model = _built(name, input_shape)
    assert model.input_shape == (None,) + input_shape   # any batch size
    x = _rand((2,) + input_shape)
    for training in (False, True):
        logits = model(x, training=training)
        assert tuple(logits.shape) == (2, 10)
        assert logits.dtype == tf.float32
        assert np.all(np.isfinite(logits.numpy()))
    assert model.layers[-1].dtype_policy.compute_dtype == "float32"


def test_any_batch_size():
    model = networks.build_network("mlp", (2,), 3, mlp_widths=(8,), dropout=0.0)
    for batch in (1, 5, 17):
        assert tuple(model(_rand((batch, 2)), training=False).shape) == (batch, 3)


def test_unknown_network_raises_config_error():
    with pytest.raises(ConfigError) as info:
        networks.build_network("resnet50", CIFAR, 10)
    message = str(info.value)
    assert "--network" in message
    for allowed in networks.NETWORKS:
        assert allowed in message


def test_bad_dropout_raises_config_error():
    with pytest.raises(ConfigError, match="--dropout"):
        networks.build_network("mlp", (2,), 2, mlp_widths=(4,), dropout=1.5)


def test_name_prefix_applies_to_all_layers():
    model = networks.build_network("mlp", (2,), 2, mlp_widths=(4,), dropout=0.0,
                                   name_prefix="teacher")
    assert model.name.startswith("teacher_")
    assert all(layer.name.startswith("teacher_") for layer in model.layers)


# ---------------------------------------------------------------------------
# Exact architectures
# ---------------------------------------------------------------------------

def _describe(layer):
    """A hashable summary of a layer's kind and the hyper-parameters the spec fixes."""
    if isinstance(layer, keras.layers.Conv2D):
        return ("conv", layer.filters, tuple(layer.kernel_size), tuple(layer.strides), layer.padding)
    if isinstance(layer, keras.layers.BatchNormalization):
        return ("bn",)
    if isinstance(layer, keras.layers.LeakyReLU):
        return ("lrelu", _leaky_slope(layer))
    if isinstance(layer, keras.layers.MaxPooling2D):
        return ("maxpool", tuple(layer.pool_size), tuple(layer.strides))
    if isinstance(layer, keras.layers.Dropout):
        return ("dropout", layer.rate)
    if isinstance(layer, keras.layers.GlobalAveragePooling2D):
        return ("gap",)
    if isinstance(layer, keras.layers.Dense):
        return ("dense", layer.units)
    return (type(layer).__name__,)


def _vat_cnn_spec(w1, w2, w3, w4, w5, num_classes=10):
    def cbl(filters, kernel, padding):
        return [("conv", filters, (kernel, kernel), (1, 1), padding), ("bn",),
                ("lrelu", pytest.approx(0.1))]

    spec = []
    spec += cbl(w1, 3, "same") * 3
    spec += [("maxpool", (2, 2), (2, 2)), ("dropout", 0.5)]
    spec += cbl(w2, 3, "same") * 3
    spec += [("maxpool", (2, 2), (2, 2)), ("dropout", 0.5)]
    spec += cbl(w3, 3, "valid") + cbl(w4, 1, "same") + cbl(w5, 1, "same")
    spec += [("gap",), ("dense", num_classes)]
    return spec


def _leaky_slope(layer):
    slope = getattr(layer, "negative_slope", None)
    return float(slope if slope is not None else layer.get_config()["negative_slope"])


@pytest.mark.parametrize("name,widths", [
    ("conv_large", (128, 256, 512, 256, 128)),
    ("conv_small", (96, 192, 192, 192, 192)),
])
def test_vat_cnn_layer_sequence_matches_official_spec(name, widths):
    model = _built(name, CIFAR)
    layers = _non_input_layers(model)
    # The functional graph is a chain, so model.layers is in execution order.
    got = [_describe(layer) for layer in layers]
    assert got == _vat_cnn_spec(*widths)
    kinds = [d[0] for d in got]
    assert kinds.count("conv") == 9 and kinds.count("bn") == 9 and kinds.count("lrelu") == 9
    assert kinds.count("maxpool") == 2 and kinds.count("dropout") == 2
    assert kinds.count("gap") == 1 and kinds.count("dense") == 1
    # Every layer consumes the previous one (no skips, nothing out of order).
    for prev, layer in zip(layers, layers[1:]):
        assert layer.input is prev.output


def test_conv_large_parameter_count():
    # Hand count: convs (no bias) + 4 BN params per channel + dense with bias, CIFAR input.
    convs = [(3, 3, 128), (3, 128, 128), (3, 128, 128), (3, 128, 256), (3, 256, 256),
             (3, 256, 256), (3, 256, 512), (1, 512, 256), (1, 256, 128)]
    expected = sum(k * k * cin * cout + 4 * cout for k, cin, cout in convs) + 128 * 10 + 10
    assert _built("conv_large", CIFAR).count_params() == expected


def test_mlp_two_circles_widths_and_parameter_count():
    model = networks.build_network("mlp", (2,), 2, mlp_widths=(100, 50), dropout=0.0)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.units for layer in dense] == [100, 50, 2]
    # Hidden Dense layers carry no bias (BN's beta follows); BN has gamma, beta,
    # moving mean, moving variance; the output Dense has a bias.
    hidden = 2 * 100 + 4 * 100 + 100 * 50 + 4 * 50
    output = 50 * 2 + 2
    assert model.count_params() == hidden + output == 5902
    trainable = 2 * 100 + 2 * 100 + 100 * 50 + 2 * 50 + output
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == trainable
    kinds = [_describe(layer)[0] for layer in _non_input_layers(model)]
    assert kinds == ["Flatten", "dense", "bn", "ReLU", "dense", "bn", "ReLU", "dense"]


def test_mlp_dropout_only_between_hidden_layers():
    model = networks.build_network("mlp", (2,), 2, mlp_widths=(100, 50, 20), dropout=0.3)
    kinds = [_describe(layer)[0] for layer in _non_input_layers(model)]
    assert kinds == ["Flatten",
                     "dense", "bn", "ReLU", "dropout",
                     "dense", "bn", "ReLU", "dropout",
                     "dense", "bn", "ReLU",
                     "dense"]
    assert all(layer.rate == 0.3 for layer in model.layers if isinstance(layer, keras.layers.Dropout))


def test_mlp_vat_mnist_default_widths():
    model = _built("mlp", MNIST)
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [1200, 600, 300, 150, 150, 10]


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_lenet_layer_sequence_and_size(dropout):
    model = networks.build_network("lenet", MNIST, 10, dropout=dropout)
    got = [_describe(layer) for layer in _non_input_layers(model)]
    block = lambda filters: [("conv", filters, (5, 5), (1, 1), "same"), ("bn",), ("lrelu", pytest.approx(0.1)),
                             ("maxpool", (2, 2), (2, 2))]
    spec = block(16) + block(32) + [("Flatten",)] + ([("dropout", dropout)] if dropout else [])
    spec += [("dense", 256), ("bn",), ("ReLU",), ("dense", 10)]
    assert got == spec
    # 5*5*1*16 + 5*5*16*32 + 7*7*32*256 + 256*10 + 10 weights; BN: 4 per channel (two trainable)
    weights = 5 * 5 * 16 + 5 * 5 * 16 * 32 + 7 * 7 * 32 * 256 + 256 * 10 + 10
    assert model.count_params() == weights + 4 * (16 + 32 + 256)
    assert not any(getattr(layer, "use_bias", False) for layer in model.layers[:-1])
    with pytest.raises(ConfigError, match="lenet"):
        networks.build_network("lenet", (3, 3, 1), 10)
    with pytest.raises(ConfigError, match="image inputs"):
        networks.build_network("lenet", (2,), 10)


def test_wrn28_2_structure():
    model = _built("wrn28_2", CIFAR)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    main = [c for c in convs if "shortcut" not in c.name]
    # Stem + 12 blocks x 2 convs = 25 (28 = 25 convs + ... per the 6n+4 rule: 6*4+4).
    assert len(main) == 1 + 3 * 4 * 2
    assert [c.filters for c in main] == [16] + [32] * 8 + [64] * 8 + [128] * 8
    strided = [c for c in convs if tuple(c.strides) != (1, 1)]
    assert sorted((c.filters, c.name.endswith("shortcut")) for c in strided) == [
        (64, False), (64, True), (128, False), (128, True)]
    shortcuts = [c for c in convs if "shortcut" in c.name]
    assert [(c.filters, tuple(c.kernel_size)) for c in shortcuts] == [(32, (1, 1)), (64, (1, 1)),
                                                                      (128, (1, 1))]
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 2 * 12 + 1
    assert {bn.momentum for bn in bns} == {0.999}
    lrelus = [layer for layer in model.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert len(lrelus) == len(bns)
    assert all(_leaky_slope(layer) == pytest.approx(0.1) for layer in lrelus)
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 12
    assert isinstance(model.layers[-1], keras.layers.Dense)
    assert isinstance(model.layers[-2], keras.layers.GlobalAveragePooling2D)
    # Known size of WRN-28-2 (about 1.5M parameters).
    assert 1.45e6 < model.count_params() < 1.50e6


# ---------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------

def _weights(model):
    return [w.numpy() for w in model.weights]


@pytest.mark.parametrize("name,input_shape,kwargs", [
    ("mlp", (2,), dict(mlp_widths=(16, 8), dropout=0.2)),
    ("conv_small", MNIST, {}),
    ("lenet", MNIST, dict(dropout=0.3)),
])
def test_same_seed_same_weights_other_seed_different(name, input_shape, kwargs):
    keras.utils.set_random_seed(123)
    a = networks.build_network(name, input_shape, 10, seed=7, **kwargs)
    keras.utils.set_random_seed(456)          # global seed must not matter
    b = networks.build_network(name, input_shape, 10, seed=7, **kwargs)
    c = networks.build_network(name, input_shape, 10, seed=8, **kwargs)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert len(wa) == len(wb) == len(wc)
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)
    kernels_a = [w.numpy() for w in a.trainable_weights if len(w.shape) > 1]
    kernels_c = [w.numpy() for w in c.trainable_weights if len(w.shape) > 1]
    for x, y in zip(kernels_a, kernels_c):
        assert not np.array_equal(x, y)
    # Dropout layers are seeded, differently from one another.
    drop_a = [layer for layer in a.layers if isinstance(layer, keras.layers.Dropout)]
    drop_b = [layer for layer in b.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.seed for d in drop_a] == [d.seed for d in drop_b]
    assert all(d.seed is not None for d in drop_a)
    assert len({d.seed for d in drop_a}) == len(drop_a)
    # Same seed -> same dropout masks in training mode.
    x = _rand((4,) + input_shape)
    np.testing.assert_array_equal(a(x, training=True).numpy(), b(x, training=True).numpy())


def test_layers_with_equal_shapes_get_distinct_initial_kernels():
    model = _built("conv_large", CIFAR)
    by_name = {layer.name: layer for layer in model.layers}
    k_b = by_name["conv1b"].kernel.numpy()
    k_c = by_name["conv1c"].kernel.numpy()
    assert k_b.shape == k_c.shape
    assert not np.array_equal(k_b, k_c)


# ---------------------------------------------------------------------------
# Batch normalisation: project layer and frozen statistics
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "conv_small", "conv_large", "lenet", "wrn28_2"])
def test_all_batch_norm_layers_are_project_layers(name):
    model = _built(name, CIFAR)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns
    assert all(type(layer) is advssl_layers.BatchNormalization for layer in bns)


def _moving_stats(model):
    return [v.numpy().copy() for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)
            for v in (layer.moving_mean, layer.moving_variance)]


@pytest.mark.parametrize("name,input_shape,kwargs", [
    ("mlp", (2,), dict(mlp_widths=(16, 8), dropout=0.0)),
    ("mlp", (2,), dict(mlp_widths=(16, 8), dropout=0.0, top_bn=True)),
    ("conv_small", MNIST, {}),
    ("lenet", MNIST, {}),
])
def test_frozen_batch_stats(name, input_shape, kwargs):
    model = networks.build_network(name, input_shape, 10, **kwargs)
    x = _rand((4,) + input_shape, seed=1) * 3.0 + 1.0
    before = _moving_stats(model)

    with advssl_layers.frozen_batch_stats():
        frozen_logits = model(x, training=True)
    for old, new in zip(before, _moving_stats(model)):
        np.testing.assert_array_equal(old, new)

    # Traced inside the context: still frozen.
    @tf.function
    def perturbed_step(inputs):
        return model(inputs, training=True)

    with advssl_layers.frozen_batch_stats():
        perturbed_step(x)
    for old, new in zip(before, _moving_stats(model)):
        np.testing.assert_array_equal(old, new)

    # Frozen training calls still normalise with batch statistics (differ from inference).
    assert not np.allclose(frozen_logits.numpy(), model(x, training=False).numpy())

    model(x, training=True)
    after = _moving_stats(model)
    assert len(after) == len(before) > 0
    assert all(not np.array_equal(old, new) for old, new in zip(before, after))


@pytest.mark.parametrize("name,input_shape,kwargs", [
    ("mlp", (2,), dict(mlp_widths=(16, 8))), ("conv_small", MNIST, {}), ("lenet", MNIST, {})])
def test_top_bn_normalises_the_logits_of_a_batch(name, input_shape, kwargs):
    """--top_bn (official VAT code): the logits are batch-normalised, so in training mode
    each class's logit has mean beta = 0 and standard deviation gamma = 1 over the batch."""
    model = networks.build_network(name, input_shape, 10, top_bn=True, **kwargs)
    assert isinstance(model.layers[-1], keras.layers.BatchNormalization)
    assert model.layers[-2].name.endswith("logits") and not model.layers[-2].use_bias
    x = _rand((32,) + input_shape, seed=4) * 2.0 + 0.5
    raw, logits = (t.numpy() for t in keras.Model(model.inputs, [model.layers[-2].output, model.output])(
        x, training=True))  # one call: the same dropout masks
    expected = (raw - raw.mean(axis=0)) / np.sqrt(raw.var(axis=0) + model.layers[-1].epsilon)
    np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(logits.mean(axis=0), 0.0, atol=1e-4)
    plain = networks.build_network(name, input_shape, 10, **kwargs)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in plain.layers[-1:])
    with pytest.raises(ConfigError, match="--top_bn"):
        networks.build_network("wrn28_2", CIFAR, 10, top_bn=True)


def test_top_bn_logits_stay_float32_under_mixed_float16(restore_policy):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = networks.build_network("mlp", (2,), 10, mlp_widths=(16, 8), top_bn=True)
    assert model.layers[-1].compute_dtype == "float32"
    assert model(_rand((4, 2)), training=True).dtype == tf.float32


# ---------------------------------------------------------------------------
# Mixed precision
# ---------------------------------------------------------------------------

@pytest.fixture
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy,name,input_shape,kwargs", [
    ("mixed_bfloat16", "mlp", (2,), dict(mlp_widths=(16, 8), dropout=0.1)),
    ("mixed_bfloat16", "conv_small", MNIST, {}),
    ("mixed_bfloat16", "wrn28_2", CIFAR, {}),
    ("mixed_float16", "mlp", (2,), dict(mlp_widths=(16, 8), dropout=0.1)),
    ("mixed_float16", "conv_small", MNIST, {}),
    ("mixed_bfloat16", "mlp_wn", (2,), dict(mlp_widths=(16, 8))),
    ("mixed_float16", "mlp_wn", (2,), dict(mlp_widths=(16, 8))),
])
def test_mixed_precision_logits_are_float32(restore_policy, policy, name, input_shape, kwargs):
    keras.mixed_precision.set_global_policy(policy)
    model = networks.build_network(name, input_shape, 10, **kwargs)
    low = policy.split("_")[1]
    convs_or_dense = [layer for layer in model.layers[:-1]
                      if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense,
                                            advssl_layers.WeightNormDense))]
    assert convs_or_dense and all(l.compute_dtype == low for l in convs_or_dense)
    x = _rand((2,) + input_shape)
    for training in (True, False):
        logits = model(x, training=training)
        assert logits.dtype == tf.float32
        assert tuple(logits.shape) == (2, 10)
        assert np.all(np.isfinite(logits.numpy()))
    with advssl_layers.frozen_batch_stats():
        assert model(x, training=True).dtype == tf.float32
    keras.mixed_precision.set_global_policy("float32")
    assert networks.build_network("mlp", (2,), 2, mlp_widths=(4,)).layers[1].compute_dtype == "float32"


# ---------------------------------------------------------------------------
# mlp_wn: the Improved-GAN MNIST discriminator (Salimans et al. 2016)
# ---------------------------------------------------------------------------

def _wn_forward(model, x, noise=None):
    """Inference-mode logits of an mlp_wn model computed in numpy from its weights:
    x -> [relu(x @ (g v / ||v||) + b)] per hidden layer -> x @ (g v / ||v||) + b."""
    dense = [layer for layer in model.layers if isinstance(layer, advssl_layers.WeightNormDense)]
    h = x.reshape(len(x), -1).astype(np.float64)
    for i, layer in enumerate(dense):
        v, g, b = (w.numpy().astype(np.float64) for w in (layer.kernel_v, layer.g, layer.bias))
        h = h @ (v * g / np.sqrt((v ** 2).sum(axis=0, keepdims=True))) + b
        if i < len(dense) - 1:
            h = np.maximum(h, 0.0)
    return h


def test_mlp_wn_layer_sequence_and_paper_defaults():
    model = _built("mlp_wn", MNIST)
    kinds = [(type(layer).__name__, getattr(layer, "units", getattr(layer, "stddev", None)))
             for layer in _non_input_layers(model)]
    expected = [("Flatten", None), ("GaussianNoise", 0.3)]
    for width in (1000, 500, 250, 250, 250):
        expected += [("WeightNormDense", width), ("ReLU", None), ("GaussianNoise", 0.5)]
    expected += [("WeightNormDense", 10)]
    assert kinds == expected
    for prev, layer in zip(model.layers, model.layers[1:]):   # a chain, in execution order
        assert layer.input is prev.output
    assert not advssl_layers.batch_norm_layers(model)
    logits = model.layers[-1]
    assert logits.name == "logits" and logits.dtype_policy.compute_dtype == "float32"
    # Hidden layers keep their scale g fixed (official train_scale=False); the logits learn it.
    hidden = [layer for layer in model.layers[:-1] if isinstance(layer, advssl_layers.WeightNormDense)]
    assert all(not layer.g.trainable for layer in hidden) and logits.g.trainable
    assert {w.name for w in logits.trainable_weights} == {"kernel_v", "g", "bias"}
    assert all({w.name for w in layer.trainable_weights} == {"kernel_v", "bias"} for layer in hidden)
    # The paper's widths when none are given, not the mlp's VAT widths.
    assert networks.build_network("mlp_wn", (2,), 2).count_params() == sum(
        i * o + 2 * o for i, o in zip((2, 1000, 500, 250, 250, 250), (1000, 500, 250, 250, 250, 2)))


def test_mlp_wn_inference_is_deterministic_and_matches_hand_computation():
    model = networks.build_network("mlp_wn", (3, 2, 1), 4, mlp_widths=(7, 5), seed=3)
    rng = np.random.default_rng(5)
    for layer in model.layers:  # non-trivial scales and biases
        if isinstance(layer, advssl_layers.WeightNormDense):
            layer.g.assign(rng.uniform(0.5, 2.0, size=layer.g.shape).astype(np.float32))
            layer.bias.assign(rng.uniform(0.1, 0.5, size=layer.bias.shape).astype(np.float32))
    x = _rand((6, 3, 2, 1), seed=6)
    first, second = model(x, training=False).numpy(), model(x, training=False).numpy()
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, _wn_forward(model, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model.predict(x, verbose=0), first)


def test_mlp_wn_column_norms_equal_g():
    model = networks.build_network("mlp_wn", (6,), 3, mlp_widths=(5, 4), seed=2)
    dense = [layer for layer in model.layers if isinstance(layer, advssl_layers.WeightNormDense)]
    assert len(dense) == 3
    for k, layer in enumerate(dense):
        np.testing.assert_allclose(np.linalg.norm(layer.kernel.numpy(), axis=0), layer.g.numpy(), rtol=1e-5)
        g = np.linspace(0.2, 3.0, layer.units).astype(np.float32) * (k + 1)
        layer.g.assign(g)
        np.testing.assert_allclose(np.linalg.norm(layer.kernel.numpy(), axis=0), g, rtol=1e-5)


def _noise_of(model, name, x):
    """What GaussianNoise layer ``name`` adds in one training-mode call on ``x``."""
    layer = model.get_layer(name)
    before, after = keras.Model(model.inputs, [layer.input, layer.output])(x, training=True)
    return after.numpy() - before.numpy()


def test_mlp_wn_training_noise_is_present_seeded_and_has_the_given_stds():
    kwargs = dict(mlp_widths=(64, 32))
    keras.utils.set_random_seed(1)
    a = networks.build_network("mlp_wn", (8,), 3, seed=4, **kwargs)
    keras.utils.set_random_seed(2)  # the global seed must not matter
    b = networks.build_network("mlp_wn", (8,), 3, seed=4, **kwargs)
    c = networks.build_network("mlp_wn", (8,), 3, seed=5, **kwargs)
    x = _rand((16, 8), seed=3)
    inference = a(x, training=False).numpy()
    trained_a, trained_b, trained_c = (m(x, training=True).numpy() for m in (a, b, c))
    assert np.abs(trained_a - inference).max() > 0.1        # noise is there in training
    np.testing.assert_array_equal(trained_a, trained_b)        # same seed, same noise
    assert not np.allclose(trained_a, trained_c)
    np.testing.assert_array_equal(a(x, training=False).numpy(), inference)  # inference: no noise
    noise_layers = [layer for layer in a.layers if isinstance(layer, keras.layers.GaussianNoise)]
    assert len(noise_layers) == 3 and len({layer.seed for layer in noise_layers}) == 3
    # Empirical stds: 0.3 on the inputs, 0.5 after each hidden ReLU (and non-default values).
    big = np.zeros((4000, 8), np.float32)
    assert np.std(_noise_of(a, "input_noise", big)) == pytest.approx(0.3, rel=0.03)
    assert np.std(_noise_of(a, "noise1", big)) == pytest.approx(0.5, rel=0.03)
    custom = networks.build_network("mlp_wn", (8,), 3, mlp_wn_input_noise=0.1, mlp_wn_hidden_noise=0.7, **kwargs)
    assert np.std(_noise_of(custom, "input_noise", big)) == pytest.approx(0.1, rel=0.03)
    assert np.std(_noise_of(custom, "noise0", big)) == pytest.approx(0.7, rel=0.03)


def test_mlp_wn_zero_noise_and_bad_flags():
    quiet = networks.build_network("mlp_wn", (4,), 2, mlp_widths=(6, 5), mlp_wn_input_noise=0.0,
                                   mlp_wn_hidden_noise=0.0)
    assert not any(isinstance(layer, keras.layers.GaussianNoise) for layer in quiet.layers)
    x = _rand((3, 4))
    np.testing.assert_array_equal(quiet(x, training=True).numpy(), quiet(x, training=False).numpy())
    with pytest.raises(ConfigError, match="--mlp_wn_hidden_noise"):
        networks.build_network("mlp_wn", (4,), 2, mlp_wn_hidden_noise=-0.1)
    with pytest.raises(ConfigError, match="--mlp_wn_input_noise"):
        networks.build_network("mlp", (4,), 2, mlp_wn_input_noise=0.3)
    with pytest.raises(ConfigError, match="--mlp_widths"):
        networks.build_network("mlp_wn", (4,), 2, mlp_widths=(3, 0))


def test_mlp_wn_keras_save_load_and_clone_give_the_same_outputs(tmp_path):
    model = networks.build_network("mlp_wn", (3, 3, 1), 4, mlp_widths=(6, 5), seed=1)
    model.layers[-1].g.assign(np.array([0.5, 1.0, 2.0, 3.0], np.float32))
    x = _rand((5, 3, 3, 1), seed=2)
    path = str(tmp_path / "mlp_wn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-6)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert not loaded.get_layer("dense0").g.trainable
    clone = keras.models.clone_model(model)  # how the EMA teacher is made
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-6)
    assert [l.seed for l in clone.layers if isinstance(l, keras.layers.GaussianNoise)] == [
        l.seed for l in model.layers if isinstance(l, keras.layers.GaussianNoise)]


# ---------------------------------------------------------------------------
# Weight normalisation
# ---------------------------------------------------------------------------

def test_weight_norm_dense_matches_hand_computation():
    layer = advssl_layers.WeightNormDense(
        4, kernel_initializer=keras.initializers.RandomNormal(seed=1))
    x = _rand((3, 5), seed=2)
    layer.build((None, 5))
    v0 = layer.kernel_v.numpy()
    # Without data-dependent init, g starts at ||v|| so the kernel equals v.
    np.testing.assert_allclose(layer.g.numpy(), np.linalg.norm(v0, axis=0), rtol=1e-6)
    np.testing.assert_allclose(layer.kernel.numpy(), v0, rtol=1e-5, atol=1e-6)

    g = np.array([0.5, 2.0, 3.0, 0.1], dtype="float32")
    bias = np.array([0.1, -0.2, 0.3, 0.0], dtype="float32")
    layer.g.assign(g)
    layer.bias.assign(bias)
    kernel = layer.kernel.numpy()
    np.testing.assert_allclose(np.linalg.norm(kernel, axis=0), g, rtol=1e-5)
    w = v0 / np.sqrt((v0 ** 2).sum(axis=0, keepdims=True)) * g
    np.testing.assert_allclose(kernel, w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(x).numpy(), x @ w + bias, rtol=1e-5, atol=1e-5)
    # Rescaling v does not change the output (the point of the reparameterisation).
    layer.kernel_v.assign(v0 * 7.0)
    np.testing.assert_allclose(layer(x).numpy(), x @ w + bias, rtol=1e-5, atol=1e-5)
    assert {w.name for w in layer.trainable_weights} == {"kernel_v", "g", "bias"}


def test_weight_norm_dense_activation_and_config_roundtrip():
    layer = advssl_layers.WeightNormDense(3, activation="relu", use_bias=False, name="wn")
    layer.build((None, 2))
    config = layer.get_config()
    assert config["units"] == 3 and config["activation"] == "relu" and config["use_bias"] is False
    clone = advssl_layers.WeightNormDense.from_config(config)
    clone.build((None, 2))
    clone.set_weights(layer.get_weights())
    x = _rand((4, 2))
    np.testing.assert_allclose(clone(x).numpy(), layer(x).numpy(), rtol=1e-6)
    assert np.all(layer(x).numpy() >= 0)


def test_weight_norm_conv2d_filter_norms_and_output():
    layer = advssl_layers.WeightNormConv2D(
        3, 3, padding="same", kernel_initializer=keras.initializers.RandomNormal(seed=3))
    x = _rand((2, 6, 6, 2), seed=4)
    y0 = layer(x)
    assert tuple(y0.shape) == (2, 6, 6, 3)
    g = np.array([1.0, 0.3, 4.0], dtype="float32")
    layer.g.assign(g)
    kernel = layer.kernel.numpy()
    assert kernel.shape == (3, 3, 2, 3)
    np.testing.assert_allclose(np.sqrt((kernel ** 2).sum(axis=(0, 1, 2))), g, rtol=1e-5)
    # Hand convolution at one interior output position.
    v = layer.kernel_v.numpy()
    w = v / np.sqrt((v ** 2).sum(axis=(0, 1, 2), keepdims=True)) * g
    y = layer(x).numpy()
    patch = x[1, 1:4, 2:5, :]                       # centred on output (2, 3)
    expected = np.einsum("hwc,hwcf->f", patch, w) + layer.bias.numpy()
    np.testing.assert_allclose(y[1, 2, 3], expected, rtol=1e-4, atol=1e-5)
    clone = advssl_layers.WeightNormConv2D.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_weight_norm_data_init_standardises_each_layer_on_the_batch_and_keeps_directions():
    """Salimans & Kingma's init: every weight-normalised layer's pre-activations have mean 0 and
    std `scale` per unit on the init batch, given the layers before it; v is untouched; the hidden
    layers' fixed g (trainable_scale=False) is set too; noise layers add nothing in the pass."""
    model = networks.build_network("mlp_wn", (6,), 3, mlp_widths=(8, 5), seed=0)
    x = _rand((64, 6), seed=5) * 3.0 + 1.0
    dense = [layer for layer in model.layers if isinstance(layer, advssl_layers.WeightNormDense)]
    directions = [layer.kernel_v.numpy().copy() for layer in dense]
    assert advssl_layers.weight_norm_data_init(model, x, scale=0.5) == 3
    h = x
    for layer, v in zip(dense, directions):
        np.testing.assert_array_equal(layer.kernel_v.numpy(), v)
        w = v / np.linalg.norm(v, axis=0) * layer.g.numpy()
        pre = h @ w + layer.bias.numpy()
        np.testing.assert_allclose(pre.mean(axis=0), 0.0, atol=1e-5)
        np.testing.assert_allclose(pre.std(axis=0), 0.5, rtol=1e-3)
        h = np.maximum(pre, 0.0)  # ReLU; the noise layers are off at inference
    np.testing.assert_allclose(model(x, training=False).numpy(), pre, rtol=1e-4, atol=1e-5)
    assert not dense[0].g.trainable and dense[-1].g.trainable


def test_weight_norm_layers_save_and_load(tmp_path):
    inputs = keras.Input((5, 5, 1))
    h = advssl_layers.WeightNormConv2D(2, 3, name="wnc")(inputs)
    h = keras.layers.Flatten()(h)
    out = advssl_layers.WeightNormDense(2, name="wnd")(h)
    model = keras.Model(inputs, out)
    path = str(tmp_path / "wn.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = _rand((3, 5, 5, 1))
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), rtol=1e-6)


# ---------------------------------------------------------------------------
# Batch-norm recalibration (official VAT "finetune batch stat")
# ---------------------------------------------------------------------------


def _relu(v):
    return np.maximum(v, 0.0)


def test_recalibration_sets_moving_stats_to_the_average_batch_statistics():
    """Two Dense-BN-ReLU layers, two batches: each moving mean / variance becomes the mean over
    batches of that batch's statistics, with the first BN normalising by its batch statistics
    when the second BN's input is formed (training mode), computed here by hand in NumPy."""
    model = networks.build_mlp((3,), 2, mlp_widths=(4, 5), seed=1)
    bns = advssl_layers.batch_norm_layers(model)
    assert len(bns) == 2
    for bn in bns:  # stale statistics from "training" that must be replaced entirely
        bn.moving_mean.assign(np.full(bn.moving_mean.shape, 7.0, np.float32))
        bn.moving_variance.assign(np.full(bn.moving_variance.shape, 9.0, np.float32))
    momenta = [bn.momentum for bn in bns]
    batches = [_rand((6, 3), seed=2), _rand((6, 3), seed=3)]
    eps = bns[0].epsilon
    w0, w1 = (model.get_layer(name).kernel.numpy() for name in ("dense0", "dense1"))

    means0, vars0, means1, vars1 = [], [], [], []
    for x in batches:
        h0 = x.astype(np.float64) @ w0
        m0, v0 = h0.mean(0), h0.var(0)
        h1 = _relu((h0 - m0) / np.sqrt(v0 + eps)) @ w1  # gamma 1, beta 0 at initialisation
        means0.append(m0), vars0.append(v0), means1.append(h1.mean(0)), vars1.append(h1.var(0))

    assert advssl_layers.recalibrate_batch_norm(model, batches) == 2
    np.testing.assert_allclose(bns[0].moving_mean.numpy(), np.mean(means0, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bns[0].moving_variance.numpy(), np.mean(vars0, 0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bns[1].moving_mean.numpy(), np.mean(means1, 0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bns[1].moving_variance.numpy(), np.mean(vars1, 0), rtol=1e-4, atol=1e-6)
    assert [bn.momentum for bn in bns] == momenta  # restored
    # Trainable weights are untouched.
    np.testing.assert_array_equal(model.get_layer("dense0").kernel.numpy(), w0)


def test_recalibration_without_batch_norm_changes_nothing():
    model = networks.build_mlp((3,), 2, mlp_widths=(4,), seed=1, batch_norm=False)
    before = [w.numpy().copy() for w in model.weights]
    assert advssl_layers.recalibrate_batch_norm(model, [_rand((4, 3))]) == 0
    for b, w in zip(before, model.weights):
        np.testing.assert_array_equal(b, w.numpy())


def test_recalibration_describes_inference_inputs_with_dropout_and_noise_off():
    """Statistics of dropped-out (or noised) activations would not match inference, where
    dropout and noise are off; the re-estimation sees what inference sees."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, use_bias=False, name="dense")(inputs)
    h = keras.layers.Dropout(0.5, seed=1, name="dropout")(h)
    h = keras.layers.GaussianNoise(0.9, seed=2, name="noise")(h)
    outputs = advssl_layers.BatchNormalization(name="bn")(h)
    model = keras.Model(inputs, outputs)
    batches = [_rand((8, 3), seed=5), _rand((8, 3), seed=6)]
    kernel = model.get_layer("dense").kernel.numpy().astype(np.float64)
    expected_mean = np.mean([(x @ kernel).mean(0) for x in batches], 0)
    expected_var = np.mean([(x @ kernel).var(0) for x in batches], 0)
    assert advssl_layers.recalibrate_batch_norm(model, batches) == 2
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), expected_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), expected_var, rtol=1e-4, atol=1e-6)
    assert model.get_layer("dropout").rate == 0.5 and model.get_layer("noise").stddev == 0.9  # restored
