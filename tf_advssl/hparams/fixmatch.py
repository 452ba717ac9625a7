"""Hyper-parameters of tf_advssl.methods.fixmatch."""
import dataclasses
from typing import ClassVar

from tf_advssl.config import ConfigError
from tf_advssl.hparams.common import param, require_nonnegative


@dataclasses.dataclass
class FixMatchParams:
    fixmatch_threshold: float = param(0.95, "Confidence tau of the weak-view prediction.")
    fixmatch_weight: float = param(1.0, "Weight lambda_u of the unlabeled term.")
    fixmatch_randaugment_ops: int = param(2, "Operations RandAugment applies to each strong view.")
    fixmatch_randaugment_magnitude: float = param(0.5, "RandAugment factor (strength in [0, 1]).")
    fixmatch_cutout: float = param(0.5, "Largest Cutout side as a fraction of the image size.")
    fixmatch_value_min: float = param(0.0, "Lowest input value RandAugment assumes (model space).")
    fixmatch_value_max: float = param(1.0, "Highest input value RandAugment assumes (model space).")
    fixmatch_vector_noise: float = param(0.1, "Strong augmentation of feature vectors: Gaussian noise std.")

    DATASET_DEFAULTS: ClassVar[dict] = {}

    def validate(self):
        require_nonnegative(self, "fixmatch_weight", "fixmatch_vector_noise")
        if not 0.0 <= self.fixmatch_threshold <= 1.0:
            raise ConfigError(f"--fixmatch_threshold must be in [0, 1], got {self.fixmatch_threshold}")
        if self.fixmatch_randaugment_ops < 0:
            raise ConfigError(f"--fixmatch_randaugment_ops must be >= 0, got {self.fixmatch_randaugment_ops}")
        if not 0.0 <= self.fixmatch_randaugment_magnitude <= 1.0:
            raise ConfigError(f"--fixmatch_randaugment_magnitude must be in [0, 1], "
                              f"got {self.fixmatch_randaugment_magnitude}")
        if not 0.0 <= self.fixmatch_cutout <= 1.0:
            raise ConfigError(f"--fixmatch_cutout must be in [0, 1], got {self.fixmatch_cutout}")
        if self.fixmatch_value_max <= self.fixmatch_value_min:
            raise ConfigError(f"--fixmatch_value_max ({self.fixmatch_value_max}) must exceed "
                              f"--fixmatch_value_min ({self.fixmatch_value_min})")
