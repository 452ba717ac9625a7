"""Hyper-parameters of tf_advssl.methods.mean_teacher."""
import dataclasses
from typing import ClassVar

from tf_advssl.config import ConfigError
from tf_advssl.hparams.common import SYNTHETIC_NOISE, input_noise_param, joint_batch_param, param, require_nonnegative


@dataclasses.dataclass
class MeanTeacherParams:
    mt_weight: float = param(100.0, "Maximum weight w_max of the consistency term.")
    mt_rampup: float = param(40000.0 / 150000.0, "Fraction of --train_steps over which the "
                                                 "consistency weight ramps up (sigmoid).")
    mt_rampup_ema_decay: float = param(0.99, "EMA decay of the teacher during the ramp-up "
                                             "(--ema_decay afterwards).")
    input_noise: float = input_noise_param()
    joint_batch: bool = joint_batch_param()

    DATASET_DEFAULTS: ClassVar[dict] = SYNTHETIC_NOISE

    def validate(self):
        require_nonnegative(self, "mt_weight", "mt_rampup", "input_noise")
        if not 0.0 <= self.mt_rampup_ema_decay < 1.0:
            raise ConfigError(f"--mt_rampup_ema_decay must be in [0, 1), got {self.mt_rampup_ema_decay}")
