"""Hyper-parameters of tf_advssl.methods.at."""
import dataclasses
from typing import ClassVar

from tf_advssl.config import NORMS, ConfigError
from tf_advssl.hparams.common import param, require_choice, require_nonnegative


@dataclasses.dataclass
class ATParams:
    at_eps: float = param(0.1, "Radius eps of the adversarial perturbation (model space).")
    at_norm: str = param("linf", "linf (FGSM) or l2 (FGM).")
    at_alpha: float = param(0.5, "Mixing: alpha*L(x) + (1-alpha)*L(x_adv).")

    DATASET_DEFAULTS: ClassVar[dict] = {
        "mnist": {"at_eps": 0.1}, "fashion_mnist": {"at_eps": 0.1},
        "cifar10": {"at_norm": "l2", "at_eps": 6.0}, "svhn_cropped": {"at_norm": "l2", "at_eps": 2.5},
    }

    def validate(self):
        require_nonnegative(self, "at_eps")
        require_choice(self, "at_norm", NORMS)
        if not 0.0 <= self.at_alpha <= 1.0:
            raise ConfigError(f"--at_alpha must be in [0, 1], got {self.at_alpha}")
