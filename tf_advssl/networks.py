"""Classifier networks: inputs in model space -> logits.

Every builder returns a functional :class:`keras.Model` whose output is the
float32 LOGITS (the final ``Dense`` layer has ``dtype="float32"``, so logits
stay float32 under ``mixed_float16`` / ``mixed_bfloat16`` policies).  All
batch normalisation is :class:`tf_advssl.layers.BatchNormalization`, which
honours :func:`tf_advssl.layers.frozen_batch_stats` (perturbed forward passes
must not update the moving statistics).

Architectures and sources
-------------------------
``mlp``
    Flatten, then ``Dense -> BN -> ReLU`` per hidden width, then
    ``Dense(num_classes)``.  Miyato et al., "Virtual Adversarial Training: A
    Regularization Method for Supervised and Semi-Supervised Learning", IEEE
    TPAMI 2018 (VAT), use 1200-600-300-150-150 on MNIST and 2-100-50-2 on the
    synthetic Two Moons / Two Circles sets.  Hidden ``Dense`` layers have no
    bias since BN's offset follows; optional dropout (``dropout > 0``) sits
    between hidden layers only.
``mlp_wn``
    The discriminator / classifier of Salimans et al., "Improved Techniques
    for Training GANs", NeurIPS 2016, on MNIST (official code
    ``openai/improved-gan``, ``mnist_svhn_cifar10/train_mnist_feature_matching.py``)::

        flatten, Gaussian noise (std input_noise = 0.3)
        per hidden width (1000-500-250-250-250):
            weight-normalised dense -> ReLU -> Gaussian noise (std hidden_noise = 0.5)
        weight-normalised dense num_classes (logits)

    No batch norm (a GAN discriminator sees labeled, unlabeled and generated
    batches in separate passes).  The noise is added in training only; in
    inference the network is deterministic.  Dense layers are
    :class:`tf_advssl.layers.WeightNormDense` (``w = g v / ||v||``, with a bias);
    as in the official code the hidden layers keep ``g`` fixed and only the
    logits layer learns it.  The official code's data-dependent initialisation
    (``g`` and the bias set so that each unit's pre-activation has mean 0 and
    std 1 on a first batch) is not done: ``v`` is He-normal and ``g = ||v||``, so
    the initial kernels are He-normal.  ``mlp_widths`` sets the hidden widths;
    ``dropout`` is ignored.  The logits layer is the model's last layer, its
    input the noisy post-ReLU activations of the last hidden layer (FM-GAN's
    feature matching uses those activations before the noise, as the official
    code).
``conv_large`` / ``conv_small``
    The CNNs of the VAT paper (TPAMI 2018, Table 4 of the arXiv version;
    reference code ``takerum/vat_tf``, ``cnn.py``)::

        conv_large                          conv_small
        3x [conv 3x3 128, same]             3x [conv 3x3 96, same]
        maxpool 2x2 stride 2, dropout 0.5   maxpool 2x2 stride 2, dropout 0.5
        3x [conv 3x3 256, same]             3x [conv 3x3 192, same]
        maxpool 2x2 stride 2, dropout 0.5   maxpool 2x2 stride 2, dropout 0.5
        conv 3x3 512, valid                 conv 3x3 192, valid
        conv 1x1 256                        conv 1x1 192
        conv 1x1 128                        conv 1x1 192
        global average pooling              global average pooling
        dense num_classes                   dense num_classes

    Each conv is followed by BN and LeakyReLU(0.1) in the order of the
    official code (conv -> BN -> lrelu).  As there, convs have no bias,
    kernels use He (fan-in, truncated normal) initialisation, BN uses
    momentum 0.99 (``bn_stats_decay_factor``), max pooling uses SAME padding,
    and dropout is element-wise.  The optional ``top_bn`` of the official code
    (off by default there) is not provided.
``lenet``
    A LeNet-style CNN for small images, light enough to train on a CPU
    (0.42 M parameters on MNIST; see docs/RESULTS.md for its step cost)::

        conv 5x5 16, same -> BN -> LeakyReLU(0.1) -> maxpool 2x2
        conv 5x5 32, same -> BN -> LeakyReLU(0.1) -> maxpool 2x2
        flatten, dropout (if ``dropout`` > 0)
        dense 256 -> BN -> ReLU
        dense num_classes

    Convs and the hidden dense layer have no bias (BN's offset follows), He
    initialisation, BN momentum 0.99 as the VAT CNNs.  Widths: ``LENET_WIDTHS``.
``wrn28_2``
    Wide ResNet-28-2 as used by Oliver et al., "Realistic Evaluation of Deep
    Semi-Supervised Learning Algorithms", NeurIPS 2018, and by FixMatch
    (Sohn et al., NeurIPS 2020): conv 3x3 16, then three groups of
    (28 - 4) / 6 = 4 pre-activation residual blocks of widths 32, 64, 128
    (k = 2) with strides 1, 2, 2, then BN -> LeakyReLU(0.1) -> global average
    pooling -> dense.  BN momentum 0.999 everywhere, LeakyReLU slope 0.1,
    convs without bias and He fan-out normal initialisation, Glorot-normal
    final dense.  A block is ``BN-lrelu-conv3x3(stride)-BN-lrelu-conv3x3`` plus
    a shortcut; when the width changes the shortcut is a 1x1 (strided) conv
    (FixMatch's choice), applied to the pre-activated input in the first
    block of the first group ("activate before residual") and to the raw
    input otherwise.  About 1.47 M parameters for 10 classes.

Reproducibility: every initializer and dropout layer receives its own seed
derived deterministically from ``seed``, so two builds with the same seed have
identical weights regardless of global RNG state.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import keras
import numpy as np

from tf_advssl.config import MLP_WIDTHS, NETWORK_DEFAULTS, ConfigError
from tf_advssl.layers import BatchNormalization, WeightNormDense

VAT_LRELU_SLOPE = 0.1
VAT_BN_MOMENTUM = 0.99      # takerum/vat_tf: bn_stats_decay_factor = 0.99
WRN_BN_MOMENTUM = 0.999     # Oliver et al. 2018 / FixMatch
WRN_LRELU_SLOPE = 0.1


class _Builder:
    """Hands out layer names (with an optional prefix) and derived seeds."""

    def __init__(self, seed: int, name_prefix: Optional[str]):
        self._rng = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0x5EED]))
        self._used = set()
        self.prefix = f"{name_prefix}_" if name_prefix else ""

    def seed(self) -> int:
        while True:
            value = int(self._rng.integers(0, 2**31 - 1))
            if value not in self._used:
                self._used.add(value)
                return value

    def name(self, base: str) -> str:
        return self.prefix + base

    # Initializers -----------------------------------------------------------
    def he_normal(self):
        return keras.initializers.HeNormal(seed=self.seed())

    def he_fan_out_normal(self):
        return keras.initializers.VarianceScaling(
            scale=2.0, mode="fan_out", distribution="untruncated_normal", seed=self.seed())

    def glorot_normal(self):
        return keras.initializers.GlorotNormal(seed=self.seed())


def _check_dropout(dropout: float) -> float:
    try:
        dropout = float(dropout)
    except (TypeError, ValueError):
        raise ConfigError(f"--dropout must be a number in [0, 1), got {dropout!r}") from None
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"--dropout must be in [0, 1), got {dropout}")
    return dropout


def _image_shape(input_shape, network: str):
    if len(input_shape) != 3 or any(d is None or int(d) <= 0 for d in input_shape):
        raise ConfigError(
            f"--network={network} needs image inputs (height, width, channels); "
            f"got input shape {tuple(input_shape)}")
    return tuple(int(d) for d in input_shape)


# ---------------------------------------------------------------------------
# MLP
# ---------------------------------------------------------------------------

TOP_BN_NETWORKS = ("mlp", "conv_small", "conv_large", "lenet")  # the networks --top_bn applies to


def _top(h, num_classes, b, top_bn):
    """Dense logits (float32), batch-normalised when ``top_bn`` (the official VAT code's
    ``--top_bn``: the logits of a batch have a learned per-class scale and shift)."""
    logits = keras.layers.Dense(num_classes, kernel_initializer=b.he_normal(), dtype="float32",
                                use_bias=not top_bn, name=b.name("logits"))(h)
    if top_bn:
        logits = BatchNormalization(momentum=VAT_BN_MOMENTUM, dtype="float32", name=b.name("bn_logits"))(logits)
    return logits


def _check_widths(mlp_widths) -> tuple:
    widths = tuple(int(w) for w in mlp_widths)
    if not widths or any(w <= 0 for w in widths):
        raise ConfigError(f"--mlp_widths must be positive integers, got {tuple(mlp_widths)}")
    return widths


def build_mlp(input_shape, num_classes, *, mlp_widths=MLP_WIDTHS,
              dropout=0.0, seed=0, name_prefix=None, batch_norm=True, top_bn=False) -> keras.Model:
    """Flatten -> [Dense -> BN -> ReLU] per width (dropout between) -> Dense logits
    (-> BN with ``top_bn``).  Without ``batch_norm`` the hidden Dense layers have biases instead."""
    b = _Builder(seed, name_prefix)
    widths = _check_widths(mlp_widths)
    inputs = keras.Input(shape=tuple(input_shape), name=b.name("inputs"))
    h = keras.layers.Flatten(name=b.name("flatten"))(inputs)
    for i, width in enumerate(widths):
        # Without batch norm the first layer's biases start uniform in [-1, 1]: with zero
        # biases every ReLU kink of a low-dimensional input passes through the origin,
        # and the network can only draw rays there (Two Circles needs a circle).
        bias_init = (keras.initializers.RandomUniform(-1.0, 1.0, seed=b.seed()) if i == 0 and not batch_norm
                     else "zeros")
        h = keras.layers.Dense(width, use_bias=not batch_norm, kernel_initializer=b.he_normal(),
                               bias_initializer=bias_init, name=b.name(f"dense{i}"))(h)
        if batch_norm:
            h = BatchNormalization(momentum=VAT_BN_MOMENTUM, name=b.name(f"bn{i}"))(h)
        h = keras.layers.ReLU(name=b.name(f"relu{i}"))(h)
        if dropout > 0 and i < len(widths) - 1:
            h = keras.layers.Dropout(dropout, seed=b.seed(), name=b.name(f"dropout{i}"))(h)
    return keras.Model(inputs, _top(h, num_classes, b, top_bn), name=b.name("mlp"))


# ---------------------------------------------------------------------------
# Improved-GAN MNIST discriminator: weight-normalised MLP with Gaussian noise
# ---------------------------------------------------------------------------

# Salimans et al. 2016, MNIST (config.NETWORK_DEFAULTS fills the run's None fields with these).
MLP_WN_WIDTHS = tuple(NETWORK_DEFAULTS["mlp_wn"]["mlp_widths"])
MLP_WN_INPUT_NOISE = float(NETWORK_DEFAULTS["mlp_wn"]["mlp_wn_input_noise"])
MLP_WN_HIDDEN_NOISE = float(NETWORK_DEFAULTS["mlp_wn"]["mlp_wn_hidden_noise"])


def _check_noise(value, flag: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{flag} must be a number >= 0, got {value!r}") from None
    if not value >= 0.0:  # also refuses NaN
        raise ConfigError(f"--{flag} must be >= 0, got {value}")
    return value


def build_mlp_wn(input_shape, num_classes, *, mlp_widths=MLP_WN_WIDTHS, input_noise=MLP_WN_INPUT_NOISE,
                 hidden_noise=MLP_WN_HIDDEN_NOISE, seed=0, name_prefix=None, **_unused) -> keras.Model:
    """Flatten -> GaussianNoise(input_noise) -> [WeightNormDense -> ReLU -> GaussianNoise(hidden_noise)]
    per width -> WeightNormDense logits (float32, learned scale).  Noise layers with std 0 are
    left out; every noise layer has its own seed derived from ``seed``."""
    b = _Builder(seed, name_prefix)
    widths = _check_widths(mlp_widths)
    input_noise = _check_noise(input_noise, "mlp_wn_input_noise")
    hidden_noise = _check_noise(hidden_noise, "mlp_wn_hidden_noise")

    def noise(x, stddev, tag):
        if stddev == 0:
            return x
        return keras.layers.GaussianNoise(stddev, seed=b.seed(), name=b.name(tag))(x)

    inputs = keras.Input(shape=tuple(input_shape), name=b.name("inputs"))
    h = keras.layers.Flatten(name=b.name("flatten"))(inputs)
    h = noise(h, input_noise, "input_noise")
    for i, width in enumerate(widths):
        h = WeightNormDense(width, kernel_initializer=b.he_normal(), trainable_scale=False,
                            name=b.name(f"dense{i}"))(h)
        h = keras.layers.ReLU(name=b.name(f"relu{i}"))(h)
        h = noise(h, hidden_noise, f"noise{i}")
    logits = WeightNormDense(num_classes, kernel_initializer=b.he_normal(), dtype="float32",
                             name=b.name("logits"))(h)
    return keras.Model(inputs, logits, name=b.name("mlp_wn"))


# ---------------------------------------------------------------------------
# VAT conv-large / conv-small
# ---------------------------------------------------------------------------

def _conv_bn_lrelu(b, x, filters, kernel, padding, tag):
    """Bias-free conv -> (project) batch norm -> leaky ReLU 0.1, the block of the VAT CNNs and lenet;
    layers named ``conv{tag}``, ``bn{tag}``, ``lrelu{tag}``."""
    x = keras.layers.Conv2D(filters, kernel, strides=1, padding=padding, use_bias=False,
                            kernel_initializer=b.he_normal(), name=b.name(f"conv{tag}"))(x)
    x = BatchNormalization(momentum=VAT_BN_MOMENTUM, name=b.name(f"bn{tag}"))(x)
    return keras.layers.LeakyReLU(negative_slope=VAT_LRELU_SLOPE, name=b.name(f"lrelu{tag}"))(x)


def _vat_cnn(model_name, widths, input_shape, num_classes, dropout, seed, name_prefix, top_bn=False):
    """Shared body of conv-large / conv-small; ``widths`` = (w1, w2, w3, w4, w5)."""
    h_in, w_in, _ = _image_shape(input_shape, model_name)
    # Two SAME max-pools then a VALID 3x3 conv: need at least 3x3 left.
    if -(-(-(-h_in // 2)) // 2) < 3 or -(-(-(-w_in // 2)) // 2) < 3:
        raise ConfigError(f"--network={model_name} needs inputs of at least 9x9 pixels, "
                          f"got {tuple(input_shape)}")
    w1, w2, w3, w4, w5 = widths
    b = _Builder(seed, name_prefix)
    inputs = keras.Input(shape=tuple(input_shape), name=b.name("inputs"))

    h = inputs
    for block, width in ((1, w1), (2, w2)):
        for j in "abc":
            h = _conv_bn_lrelu(b, h, width, 3, "same", f"{block}{j}")
        h = keras.layers.MaxPooling2D(pool_size=2, strides=2, padding="same",
                                      name=b.name(f"pool{block}"))(h)
        if dropout > 0:
            h = keras.layers.Dropout(dropout, seed=b.seed(), name=b.name(f"dropout{block}"))(h)
    h = _conv_bn_lrelu(b, h, w3, 3, "valid", "3a")
    h = _conv_bn_lrelu(b, h, w4, 1, "same", "3b")
    h = _conv_bn_lrelu(b, h, w5, 1, "same", "3c")
    h = keras.layers.GlobalAveragePooling2D(name=b.name("gap"))(h)
    return keras.Model(inputs, _top(h, num_classes, b, top_bn), name=b.name(model_name))


def build_conv_large(input_shape, num_classes, *, dropout=0.5, seed=0, name_prefix=None,
                     top_bn=False, **_unused) -> keras.Model:
    """VAT conv-large (128/256/512-256-128)."""
    return _vat_cnn("conv_large", (128, 256, 512, 256, 128), input_shape, num_classes,
                    dropout, seed, name_prefix, top_bn)


def build_conv_small(input_shape, num_classes, *, dropout=0.5, seed=0, name_prefix=None,
                     top_bn=False, **_unused) -> keras.Model:
    """VAT conv-small (96/192/192-192-192)."""
    return _vat_cnn("conv_small", (96, 192, 192, 192, 192), input_shape, num_classes,
                    dropout, seed, name_prefix, top_bn)


# ---------------------------------------------------------------------------
# LeNet-style CNN
# ---------------------------------------------------------------------------

LENET_WIDTHS = (16, 32, 256)   # conv 1, conv 2, hidden dense


def build_lenet(input_shape, num_classes, *, dropout=0.0, seed=0, name_prefix=None, top_bn=False,
                **_unused) -> keras.Model:
    """Two 5x5 conv -> BN -> lrelu -> maxpool blocks, a dense -> BN -> ReLU layer, logits."""
    h_in, w_in, _ = _image_shape(input_shape, "lenet")
    if h_in < 4 or w_in < 4:
        raise ConfigError(f"--network=lenet needs inputs of at least 4x4 pixels, got {tuple(input_shape)}")
    conv1, conv2, hidden = LENET_WIDTHS
    b = _Builder(seed, name_prefix)
    inputs = keras.Input(shape=tuple(input_shape), name=b.name("inputs"))
    h = inputs
    for block, filters in ((1, conv1), (2, conv2)):
        h = _conv_bn_lrelu(b, h, filters, 5, "same", block)
        h = keras.layers.MaxPooling2D(pool_size=2, strides=2, name=b.name(f"pool{block}"))(h)
    h = keras.layers.Flatten(name=b.name("flatten"))(h)
    if dropout > 0:
        h = keras.layers.Dropout(dropout, seed=b.seed(), name=b.name("dropout"))(h)
    h = keras.layers.Dense(hidden, use_bias=False, kernel_initializer=b.he_normal(), name=b.name("dense"))(h)
    h = BatchNormalization(momentum=VAT_BN_MOMENTUM, name=b.name("bn_dense"))(h)
    h = keras.layers.ReLU(name=b.name("relu_dense"))(h)
    return keras.Model(inputs, _top(h, num_classes, b, top_bn), name=b.name("lenet"))


# ---------------------------------------------------------------------------
# Wide ResNet-28-2
# ---------------------------------------------------------------------------

def build_wrn28_2(input_shape, num_classes, *, seed=0, name_prefix=None, depth=28, width=2,
                  **_unused) -> keras.Model:
    """WRN-28-2 (Oliver et al. 2018 / FixMatch); no dropout (``dropout`` is ignored)."""
    _image_shape(input_shape, "wrn28_2")
    if (depth - 4) % 6:
        raise ConfigError(f"WRN depth must be 6n+4, got {depth}")
    blocks_per_group = (depth - 4) // 6
    b = _Builder(seed, name_prefix)

    def bn_lrelu(x, tag):
        x = BatchNormalization(momentum=WRN_BN_MOMENTUM, name=b.name(f"{tag}_bn"))(x)
        return keras.layers.LeakyReLU(negative_slope=WRN_LRELU_SLOPE, name=b.name(f"{tag}_lrelu"))(x)

    def conv(x, filters, kernel, stride, tag):
        return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                                   kernel_initializer=b.he_fan_out_normal(), name=b.name(tag))(x)

    def residual(x0, filters, stride, activate_before_residual, tag):
        x = bn_lrelu(x0, f"{tag}_pre1")
        if activate_before_residual:
            x0 = x
        x = conv(x, filters, 3, stride, f"{tag}_conv1")
        x = bn_lrelu(x, f"{tag}_pre2")
        x = conv(x, filters, 3, 1, f"{tag}_conv2")
        if x0.shape[-1] != filters or stride != 1:
            x0 = conv(x0, filters, 1, stride, f"{tag}_shortcut")
        return keras.layers.Add(name=b.name(f"{tag}_add"))([x0, x])

    inputs = keras.Input(shape=tuple(input_shape), name=b.name("inputs"))
    h = conv(inputs, 16, 3, 1, "conv0")
    base = 16 * width
    for group in range(3):
        filters = base << group
        h = residual(h, filters, 2 if group else 1, group == 0, f"g{group + 1}b1")
        for k in range(1, blocks_per_group):
            h = residual(h, filters, 1, False, f"g{group + 1}b{k + 1}")
    h = bn_lrelu(h, "final")
    h = keras.layers.GlobalAveragePooling2D(name=b.name("gap"))(h)
    logits = keras.layers.Dense(num_classes, kernel_initializer=b.glorot_normal(), dtype="float32",
                                name=b.name("logits"))(h)
    return keras.Model(inputs, logits, name=b.name(f"wrn{depth}_{width}"))


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------

NETWORKS: Dict[str, Callable[..., keras.Model]] = {
    "mlp": build_mlp,
    "mlp_wn": build_mlp_wn,
    "conv_small": build_conv_small,
    "conv_large": build_conv_large,
    "lenet": build_lenet,
    "wrn28_2": build_wrn28_2,
}


VECTOR_NETWORKS = ("mlp", "mlp_wn")  # the networks that take feature vectors (any input shape)


def check_network_options(name: str, *, top_bn: bool = False, mlp_wn_input_noise: Optional[float] = None,
                          mlp_wn_hidden_noise: Optional[float] = None, mlp_widths: Optional[Sequence[int]] = None,
                          dropout: Optional[float] = None, inputs=None) -> None:
    """Raise ConfigError, naming the flag and the allowed values, for an unknown network,
    options ``name`` does not take or bad values (None: not given).  ``inputs``: the data's
    ``data.InputInfo`` if known; feature vectors need one of VECTOR_NETWORKS.
    ``training.validate`` calls it before any work starts."""
    if name not in NETWORKS:
        raise ConfigError(f"--network={name!r} is unknown; allowed values: {', '.join(sorted(NETWORKS))}")
    if inputs is not None and not inputs.is_image and name not in VECTOR_NETWORKS:
        shape = f" of shape {tuple(inputs.input_shape)}" if inputs.input_shape else ""
        raise ConfigError(f"--network={name} needs images, but the data hold feature vectors{shape}; "
                          f"use --network={' or '.join(VECTOR_NETWORKS)} (or leave --network unset)")
    if top_bn and name not in TOP_BN_NETWORKS:
        raise ConfigError(f"--top_bn applies to --network={', '.join(TOP_BN_NETWORKS)}, not {name}")
    for flag, value in (("mlp_wn_input_noise", mlp_wn_input_noise), ("mlp_wn_hidden_noise", mlp_wn_hidden_noise)):
        if value is not None:
            if name != "mlp_wn":
                raise ConfigError(f"--{flag} applies to --network=mlp_wn, not {name}")
            _check_noise(value, flag)
    if mlp_widths is not None:
        try:
            widths = tuple(int(w) for w in mlp_widths)
        except (TypeError, ValueError):
            raise ConfigError(f"--mlp_widths must be positive integers, got {mlp_widths!r}") from None
        _check_widths(widths)
    if dropout is not None:
        _check_dropout(dropout)


def build_network(name: str, input_shape: tuple, num_classes: int, *,
                  mlp_widths: Optional[Sequence[int]] = None,
                  dropout: float = 0.5, seed: int = 0,
                  name_prefix: Optional[str] = None, mlp_batch_norm: bool = True,
                  top_bn: bool = False, mlp_wn_input_noise: Optional[float] = None,
                  mlp_wn_hidden_noise: Optional[float] = None) -> keras.Model:
    """Build network ``name`` mapping inputs of shape ``input_shape`` to float32 logits.

    ``input_shape`` excludes the batch axis (any batch size is accepted).
    ``mlp_widths`` is used by ``mlp`` and ``mlp_wn`` (None: each one's default,
    1200-600-300-150-150 and 1000-500-250-250-250); ``mlp_batch_norm`` by ``mlp`` only;
    ``dropout`` by ``mlp``, ``lenet`` and the VAT CNNs (``wrn28_2`` and ``mlp_wn`` have none); ``top_bn``
    (batch norm on the logits) by ``mlp``, ``lenet`` and the VAT CNNs; ``mlp_wn_input_noise`` and
    ``mlp_wn_hidden_noise`` (None: 0.3 and 0.5) by ``mlp_wn`` only.  ``name_prefix`` prefixes
    every layer name and the model name (useful when two copies live in one graph).
    """
    if name not in NETWORKS:
        raise ConfigError(f"--network={name!r} is unknown; allowed values: "
                          f"{', '.join(sorted(NETWORKS))}")
    try:
        input_shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"input shape must be a tuple of ints, got {input_shape!r}") from None
    if not input_shape or any(d <= 0 for d in input_shape):
        raise ConfigError(f"input shape must be non-empty and positive, got {input_shape}")
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ConfigError(f"number of classes must be positive, got {num_classes}")
    dropout = _check_dropout(dropout)
    check_network_options(name, top_bn=top_bn, mlp_wn_input_noise=mlp_wn_input_noise,
                          mlp_wn_hidden_noise=mlp_wn_hidden_noise)
    kwargs = dict(dropout=dropout, seed=int(seed), name_prefix=name_prefix)
    if top_bn:
        kwargs["top_bn"] = True
    if name in ("mlp", "mlp_wn") and mlp_widths is not None:
        kwargs["mlp_widths"] = mlp_widths
    if name == "mlp":
        kwargs["batch_norm"] = bool(mlp_batch_norm)
    if name == "mlp_wn":
        kwargs["input_noise"] = MLP_WN_INPUT_NOISE if mlp_wn_input_noise is None else mlp_wn_input_noise
        kwargs["hidden_noise"] = MLP_WN_HIDDEN_NOISE if mlp_wn_hidden_noise is None else mlp_wn_hidden_noise
    return NETWORKS[name](input_shape, num_classes, **kwargs)
