"""Fields and checks shared by the methods' Params."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from tf_advssl.config import ConfigError


def param(default, help: str, **metadata):
    """A method hyper-parameter: a dataclass field whose flag help is ``help``."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def require_nonnegative(params, *names):
    for name in names:
        value = getattr(params, name)
        if value < 0:
            raise ConfigError(f"--{name} must be >= 0, got {value}")


def require_choice(params, name, allowed):
    value = getattr(params, name)
    if value not in allowed:
        raise ConfigError(f"--{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def joint_batch_param():
    """The ``joint_batch`` field shared by the methods that train on labeled and unlabeled rows."""
    return param(True, "One training pass over the labeled and the unlabeled rows, so batch norm "
                       "normalises both with the same statistics (false: separate passes, in which a "
                       "batch-norm network can fit the labels under the statistics of labeled-only "
                       "batches; docs/methods.md).")


def input_noise_param():
    """The ``input_noise`` field shared (same meaning, same default) by the consistency methods."""
    return param(0.15, "Std of the Gaussian noise added to the inputs of every stochastic pass "
                       "(pi_model, temporal_ensembling, mean_teacher).")


SYNTHETIC_NOISE = {"two_circles": {"input_noise": 0.05}, "moons": {"input_noise": 0.05}}

# The 2-D sets, where AdvMixup, ICT and MixMatch mix with alpha = 0.1 (docs/defaults.md).
SMALL_MIXUP_SETS = ("two_circles", "moons")


@dataclasses.dataclass
class NoParams:
    """The Params of a method without hyper-parameters (supervised)."""
    DATASET_DEFAULTS: ClassVar[dict] = {}

    def validate(self) -> None:
        pass
