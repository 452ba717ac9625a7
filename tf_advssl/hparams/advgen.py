"""Hyper-parameters of tf_advssl.methods.advgen."""
import dataclasses
from typing import ClassVar

from tf_advssl.config import ConfigError
from tf_advssl.hparams.common import param, require_nonnegative


@dataclasses.dataclass
class AdvGenParams:
    advgen_alpha: float = param(1.0, "Weight alpha of the adversarial loss (both players).")
    advgen_lambda: float = param(1.0, "Weight lambda of the reconstruction loss in the generator's objective.")
    advgen_noise_std: float = param(0.1, "Std of the Gaussian noise z added to the generator's latent code.")
    advgen_learning_rate: float = param(1e-3, "Adam learning rate of the generator.")
    entmin: bool = param(False, "Add the conditional-entropy term on unlabeled data to C's loss "
                                "(not in the paper; see the module docstring).")

    # moons: chosen on a 300-point validation split among 1, 10, 100 (docs/defaults.md); with
    # lambda = 1 the generator moves points across the gap between the moons.
    DATASET_DEFAULTS: ClassVar[dict] = {"moons": {"advgen_lambda": 10.0}}

    def validate(self):
        require_nonnegative(self, "advgen_alpha", "advgen_lambda", "advgen_noise_std")
        if self.advgen_learning_rate <= 0:
            raise ConfigError(f"--advgen_learning_rate must be > 0, got {self.advgen_learning_rate}")
