"""Hyper-parameters of tf_advssl.methods.fm_gan."""
import dataclasses
from typing import ClassVar

from tf_advssl.config import ConfigError
from tf_advssl.hparams.common import param, require_choice, require_nonnegative

GENERATORS = ("mlp", "conv")
OUTPUTS = ("linear", "sigmoid", "tanh")


@dataclasses.dataclass
class FMGANParams:
    fm_gan_generator: str = param("mlp", "Generator architecture: mlp, or conv (images with sides divisible by 4).")
    fm_gan_noise_dim: int = param(100, "Dimension of the generator's uniform noise z.")
    fm_gan_hidden_units: int = param(500, "Units of each hidden layer of the mlp generator.")
    fm_gan_output: str = param("linear", "Output nonlinearity of the generator: linear, sigmoid or tanh.")
    fm_gan_unlabeled_weight: float = param(0.5, "Weight w of the unsupervised GAN term of the discriminator.")
    fm_gan_input_noise: float = param(0.0, "Std of Gaussian noise FM-GAN adds to the discriminator's inputs in "
                                           "training (0.3 on MNIST, 0 with --network=mlp_wn, whose own "
                                           "--mlp_wn_input_noise is the paper's input noise).")
    fm_gan_learning_rate: float = param(0.003, "Adam (beta_1 0.5) learning rate of the generator.")

    DATASET_DEFAULTS: ClassVar[dict] = {
        "mnist": {"fm_gan_output": "sigmoid", "fm_gan_input_noise": 0.3},
        "fashion_mnist": {"fm_gan_output": "sigmoid", "fm_gan_input_noise": 0.3},
        "svhn_cropped": {"fm_gan_generator": "conv"},
        "cifar10": {"fm_gan_generator": "conv"},
        "cifar100": {"fm_gan_generator": "conv"},
    }
    # Defaults for the run's --network, over DATASET_DEFAULTS (under the flags): mlp_wn adds
    # the paper's input noise itself, so FM-GAN adds none.
    NETWORK_DEFAULTS: ClassVar[dict] = {"mlp_wn": {"fm_gan_input_noise": 0.0}}

    def validate(self):
        require_choice(self, "fm_gan_generator", GENERATORS)
        require_choice(self, "fm_gan_output", OUTPUTS)
        require_nonnegative(self, "fm_gan_unlabeled_weight", "fm_gan_input_noise")
        for name in ("fm_gan_noise_dim", "fm_gan_hidden_units"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.fm_gan_learning_rate <= 0:
            raise ConfigError(f"--fm_gan_learning_rate must be > 0, got {self.fm_gan_learning_rate}")
