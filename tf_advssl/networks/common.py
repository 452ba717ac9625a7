"""What the network builders share: seeds and names of layers, the logits layer, and the
checks of their options.
"""
from __future__ import annotations

from typing import Optional

import keras
import numpy as np

from tf_advssl.config import ConfigError
from tf_advssl.layers import BatchNormalization



VAT_LRELU_SLOPE = 0.1


VAT_BN_MOMENTUM = 0.99      # takerum/vat_tf: bn_stats_decay_factor = 0.99


WRN_BN_MOMENTUM = 0.999     # Oliver et al. 2018 / FixMatch


WRN_LRELU_SLOPE = 0.1


class Builder:
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


def check_dropout(dropout: float) -> float:
    try:
        dropout = float(dropout)
    except (TypeError, ValueError):
        raise ConfigError(f"--dropout must be a number in [0, 1), got {dropout!r}") from None
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"--dropout must be in [0, 1), got {dropout}")
    return dropout


def image_shape(input_shape, network: str):
    if len(input_shape) != 3 or any(d is None or int(d) <= 0 for d in input_shape):
        raise ConfigError(
            f"--network={network} needs image inputs (height, width, channels); "
            f"got input shape {tuple(input_shape)}")
    return tuple(int(d) for d in input_shape)


TOP_BN_NETWORKS = ("mlp", "conv_small", "conv_large", "lenet")  # the networks --top_bn applies to


def logits_layer(h, num_classes, b, top_bn):
    """Dense logits (float32), batch-normalised when ``top_bn`` (the official VAT code's
    ``--top_bn``: the logits of a batch have a learned per-class scale and shift)."""
    logits = keras.layers.Dense(num_classes, kernel_initializer=b.he_normal(), dtype="float32",
                                use_bias=not top_bn, name=b.name("logits"))(h)
    if top_bn:
        logits = BatchNormalization(momentum=VAT_BN_MOMENTUM, dtype="float32", name=b.name("bn_logits"))(logits)
    return logits


def check_widths(mlp_widths) -> tuple:
    widths = tuple(int(w) for w in mlp_widths)
    if not widths or any(w <= 0 for w in widths):
        raise ConfigError(f"--mlp_widths must be positive integers, got {tuple(mlp_widths)}")
    return widths


def check_noise(value, flag: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{flag} must be a number >= 0, got {value!r}") from None
    if not value >= 0.0:  # also refuses NaN
        raise ConfigError(f"--{flag} must be >= 0, got {value}")
    return value
