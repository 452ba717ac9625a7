"""Hyper-parameters of tf_advssl.methods.temporal_ensembling."""
import dataclasses
from typing import ClassVar

from tf_advssl.config import ConfigError
from tf_advssl.hparams.common import SYNTHETIC_NOISE, input_noise_param, joint_batch_param, param, require_nonnegative


@dataclasses.dataclass
class TemporalEnsemblingParams:
    te_alpha: float = param(0.6, "Ensemble momentum alpha of the per-example prediction average.")
    te_weight: float = param(30.0, "Maximum weight w_max of the consistency term.")
    te_rampup: float = param(80.0 / 300.0, "Fraction of --train_steps over which the consistency "
                                           "weight ramps up (sigmoid).")
    input_noise: float = input_noise_param()
    joint_batch: bool = joint_batch_param()

    DATASET_DEFAULTS: ClassVar[dict] = SYNTHETIC_NOISE

    def validate(self):
        require_nonnegative(self, "te_weight", "te_rampup", "input_noise")
        if not 0.0 <= self.te_alpha < 1.0:
            raise ConfigError(f"--te_alpha must be in [0, 1), got {self.te_alpha}")
