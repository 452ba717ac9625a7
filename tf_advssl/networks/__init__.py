"""Classifier networks: inputs in model space -> logits.

Every builder returns a functional :class:`keras.Model` whose output is the
float32 LOGITS (the final ``Dense`` layer has ``dtype="float32"``, so logits
stay float32 under ``mixed_float16`` / ``mixed_bfloat16`` policies).  All
batch normalisation is :class:`tf_advssl.layers.BatchNormalization`, which
honours :func:`tf_advssl.layers.frozen_batch_stats` (perturbed forward passes
must not update the moving statistics).

Modules: ``mlp`` (``mlp``, ``mlp_wn``), ``cnn`` (``conv_large``, ``conv_small``, ``lenet``),
``wrn`` (``wrn28_2``), each builder's architecture and source in its docstring; ``common``.

Reproducibility: every initializer and dropout layer receives its own seed
derived deterministically from ``seed``, so two builds with the same seed have
identical weights regardless of global RNG state.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import keras

from tf_advssl.config import ConfigError

from tf_advssl.networks.cnn import build_conv_large, build_conv_small, build_lenet
from tf_advssl.networks.common import TOP_BN_NETWORKS, check_dropout, check_noise, check_widths
from tf_advssl.networks.mlp import MLP_WN_HIDDEN_NOISE, MLP_WN_INPUT_NOISE, build_mlp, build_mlp_wn
from tf_advssl.networks.wrn import build_wrn28_2


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
            check_noise(value, flag)
    if mlp_widths is not None:
        try:
            widths = tuple(int(w) for w in mlp_widths)
        except (TypeError, ValueError):
            raise ConfigError(f"--mlp_widths must be positive integers, got {mlp_widths!r}") from None
        check_widths(widths)
    if dropout is not None:
        check_dropout(dropout)


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
    dropout = check_dropout(dropout)
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
