"""Wide ResNet.

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
"""
from __future__ import annotations

import keras

from tf_advssl.config import ConfigError
from tf_advssl.layers import BatchNormalization

from tf_advssl.networks.common import Builder, WRN_BN_MOMENTUM, WRN_LRELU_SLOPE, image_shape


def build_wrn28_2(input_shape, num_classes, *, seed=0, name_prefix=None, depth=28, width=2,
                  **_unused) -> keras.Model:
    """WRN-28-2 (Oliver et al. 2018 / FixMatch); no dropout (``dropout`` is ignored)."""
    image_shape(input_shape, "wrn28_2")
    if (depth - 4) % 6:
        raise ConfigError(f"WRN depth must be 6n+4, got {depth}")
    blocks_per_group = (depth - 4) // 6
    b = Builder(seed, name_prefix)

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
