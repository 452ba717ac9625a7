"""Hyper-parameters of tf_advssl.methods.pi_model."""
import dataclasses
from typing import ClassVar

from tf_advssl.hparams.common import SYNTHETIC_NOISE, input_noise_param, joint_batch_param, param, require_nonnegative


@dataclasses.dataclass
class PiModelParams:
    pi_weight: float = param(100.0, "Maximum weight w_max of the consistency term.")
    pi_rampup: float = param(80.0 / 300.0, "Fraction of --train_steps over which the consistency "
                                           "weight ramps up (sigmoid).")
    input_noise: float = input_noise_param()
    pi_stop_gradient: bool = param(False, "Treat the second pass as a fixed target (libml variant).")
    joint_batch: bool = joint_batch_param()

    DATASET_DEFAULTS: ClassVar[dict] = SYNTHETIC_NOISE

    def validate(self):
        require_nonnegative(self, "pi_weight", "pi_rampup", "input_noise")
