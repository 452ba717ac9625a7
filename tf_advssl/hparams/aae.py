"""Hyper-parameters of tf_advssl.methods.aae."""
import dataclasses
from typing import ClassVar

from tf_advssl.config import ConfigError
from tf_advssl.hparams.common import param, require_nonnegative


@dataclasses.dataclass
class AAEParams:
    aae_style_dim: int = param(10, "Dimension of the Gaussian style code z.")
    aae_hidden_units: int = param(1000, "Units of each of the two hidden layers of the decoder and "
                                        "the discriminators.")
    aae_prior_std: float = param(1.0, "Standard deviation of the Gaussian prior on z.")
    # 3e-4, chosen on validation splits of digits and moons (docs/defaults.md): at 1e-3 the
    # adversarial phases undo the classification phase on digits and the labels are never fitted.
    aae_learning_rate: float = param(3e-4, "Adam learning rate of the reconstruction and "
                                           "regularization phases.")

    DATASET_DEFAULTS: ClassVar[dict] = {
        "two_circles": {"aae_style_dim": 2, "aae_hidden_units": 100},
        "moons": {"aae_style_dim": 2, "aae_hidden_units": 100},
    }

    def validate(self):
        for name in ("aae_style_dim", "aae_hidden_units"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
        require_nonnegative(self, "aae_prior_std")
        if self.aae_learning_rate <= 0:
            raise ConfigError(f"--aae_learning_rate must be > 0, got {self.aae_learning_rate}")
