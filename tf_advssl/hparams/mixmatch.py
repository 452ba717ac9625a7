"""Hyper-parameters of tf_advssl.methods.mixmatch."""
import dataclasses
from typing import ClassVar

from tf_advssl.config import ConfigError
from tf_advssl.hparams.common import SMALL_MIXUP_SETS, param, require_nonnegative


@dataclasses.dataclass
class MixMatchParams:
    mixmatch_k: int = param(2, "Number K of augmentations of each unlabeled example.")
    mixmatch_temperature: float = param(0.5, "Sharpening temperature T.")
    mixmatch_alpha: float = param(0.75, "MixUp Beta(alpha, alpha) parameter.")
    mixmatch_weight: float = param(100.0, "Maximum weight lambda_U of the unlabeled term.")
    mixmatch_rampup: float = param(0.4, "Fraction of --train_steps over which lambda_U rises linearly "
                                        "(at most --mixmatch_rampup_max_steps).")
    mixmatch_rampup_max_steps: int = param(16384, "Longest ramp-up of lambda_U in steps (the paper's 16 000 "
                                                  "of 2^20).")

    # The 2-D sets: alpha = 0.1, as AdvMixup's and ICT's there, chosen on validation splits of
    # Two Circles (45.50 against 51.00 %) and moons (7.83 against 8.33 %) (docs/defaults.md).
    DATASET_DEFAULTS: ClassVar[dict] = {name: {"mixmatch_alpha": 0.1} for name in SMALL_MIXUP_SETS}

    def validate(self):
        require_nonnegative(self, "mixmatch_weight", "mixmatch_rampup", "mixmatch_rampup_max_steps")
        if self.mixmatch_k < 1:
            raise ConfigError(f"--mixmatch_k must be >= 1, got {self.mixmatch_k}")
        if self.mixmatch_temperature <= 0:
            raise ConfigError(f"--mixmatch_temperature must be > 0, got {self.mixmatch_temperature}")
        if self.mixmatch_alpha <= 0:
            raise ConfigError(f"--mixmatch_alpha must be > 0, got {self.mixmatch_alpha}")
