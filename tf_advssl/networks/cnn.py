"""The convolutional networks of the VAT paper and a LeNet-style CNN.

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
    (0.42 M parameters on MNIST; see docs/performance.md for its step cost)::

        conv 5x5 16, same -> BN -> LeakyReLU(0.1) -> maxpool 2x2
        conv 5x5 32, same -> BN -> LeakyReLU(0.1) -> maxpool 2x2
        flatten, dropout (if ``dropout`` > 0)
        dense 256 -> BN -> ReLU
        dense num_classes

    Convs and the hidden dense layer have no bias (BN's offset follows), He
    initialisation, BN momentum 0.99 as the VAT CNNs.  Widths: ``LENET_WIDTHS``.
"""
from __future__ import annotations

import keras

from tf_advssl.config import ConfigError
from tf_advssl.layers import BatchNormalization

from tf_advssl.networks.common import Builder, VAT_BN_MOMENTUM, VAT_LRELU_SLOPE, image_shape, logits_layer


def _conv_bn_lrelu(b, x, filters, kernel, padding, tag):
    """Bias-free conv -> (project) batch norm -> leaky ReLU 0.1, the block of the VAT CNNs and lenet;
    layers named ``conv{tag}``, ``bn{tag}``, ``lrelu{tag}``."""
    x = keras.layers.Conv2D(filters, kernel, strides=1, padding=padding, use_bias=False,
                            kernel_initializer=b.he_normal(), name=b.name(f"conv{tag}"))(x)
    x = BatchNormalization(momentum=VAT_BN_MOMENTUM, name=b.name(f"bn{tag}"))(x)
    return keras.layers.LeakyReLU(negative_slope=VAT_LRELU_SLOPE, name=b.name(f"lrelu{tag}"))(x)


def _vat_cnn(model_name, widths, input_shape, num_classes, dropout, seed, name_prefix, top_bn=False):
    """Shared body of conv-large / conv-small; ``widths`` = (w1, w2, w3, w4, w5)."""
    h_in, w_in, _ = image_shape(input_shape, model_name)
    # Two SAME max-pools then a VALID 3x3 conv: need at least 3x3 left.
    if -(-(-(-h_in // 2)) // 2) < 3 or -(-(-(-w_in // 2)) // 2) < 3:
        raise ConfigError(f"--network={model_name} needs inputs of at least 9x9 pixels, "
                          f"got {tuple(input_shape)}")
    w1, w2, w3, w4, w5 = widths
    b = Builder(seed, name_prefix)
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
    return keras.Model(inputs, logits_layer(h, num_classes, b, top_bn), name=b.name(model_name))


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


LENET_WIDTHS = (16, 32, 256)   # conv 1, conv 2, hidden dense


def build_lenet(input_shape, num_classes, *, dropout=0.0, seed=0, name_prefix=None, top_bn=False,
                **_unused) -> keras.Model:
    """Two 5x5 conv -> BN -> lrelu -> maxpool blocks, a dense -> BN -> ReLU layer, logits."""
    h_in, w_in, _ = image_shape(input_shape, "lenet")
    if h_in < 4 or w_in < 4:
        raise ConfigError(f"--network=lenet needs inputs of at least 4x4 pixels, got {tuple(input_shape)}")
    conv1, conv2, hidden = LENET_WIDTHS
    b = Builder(seed, name_prefix)
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
    return keras.Model(inputs, logits_layer(h, num_classes, b, top_bn), name=b.name("lenet"))
