"""Hyper-parameters of tf_advssl.methods.pseudo_label."""
import dataclasses
from typing import ClassVar

from tf_advssl.config import ConfigError
from tf_advssl.hparams.common import joint_batch_param, param, require_nonnegative


@dataclasses.dataclass
class PseudoLabelParams:
    pseudo_label_threshold: float = param(0.95, "Confidence tau a prediction needs to become a pseudo-label.")
    pseudo_label_weight: float = param(1.0, "Final weight alpha_f of the pseudo-label term.")
    pseudo_label_rampup: float = param(0.4, "Fraction of --train_steps over which the weight rises linearly.")
    joint_batch: bool = joint_batch_param()

    DATASET_DEFAULTS: ClassVar[dict] = {}

    def validate(self):
        require_nonnegative(self, "pseudo_label_weight", "pseudo_label_rampup")
        if not 0.0 <= self.pseudo_label_threshold <= 1.0:
            raise ConfigError(f"--pseudo_label_threshold must be in [0, 1], got {self.pseudo_label_threshold}")
