"""Hyper-parameters of tf_advssl.methods.advmixup."""
import dataclasses
from typing import ClassVar

from tf_advssl.config import ConfigError
from tf_advssl.hparams.common import (SMALL_MIXUP_SETS, joint_batch_param, param, require_choice,
                                      require_nonnegative)
from tf_advssl.hparams.vat import VATParams

MIXUP_PAIRS = ("real_adv", "real_real", "adv_adv")
DIVERGENCES = ("mse", "kl")


@dataclasses.dataclass
class AdvMixupParams:
    mixup_pairs: str = param("real_adv", "Ends of the interpolation paths: real_adv (AdvMixup), "
                                         "real_real (ICT) or adv_adv.")
    mixup_alpha: float = param(1.0, "lambda ~ Beta(alpha, alpha).")
    mixup_divergence: str = param("kl", "Consistency divergence: mse (squared error of probabilities) "
                                        "or kl (KL(target || prediction)).")
    mixup_weight: float = param(1.0, "Weight beta of the consistency term after the ramp-up.")
    mixup_rampup: float = param(0.25, "Length of the sigmoid ramp-up of beta, as a fraction of --train_steps.")
    vat_eps: float = param(1.0, "L2 radius eps of the adversarial perturbation (model space).")
    # With the teacher as target the finite difference is dominated by the first-order
    # term J^T (p_student - p_teacher), which float32 resolves (unlike VAT's H d).
    vat_xi: float = param(1e-6, "Finite-difference radius xi of the power iteration.")
    joint_batch: bool = joint_batch_param()  # here: the labeled and the MIXED rows

    # VAT's eps per data set; on the 2-D sets also alpha = 0.1 (ICT's SVHN value), chosen on
    # validation splits of moons and Two Circles against alpha = 1: mixing two points of
    # interleaved moons or concentric rings puts soft targets across the other class
    # (docs/defaults.md).
    DATASET_DEFAULTS: ClassVar[dict] = {
        name: {"vat_eps": values["vat_eps"], **({"mixup_alpha": 0.1} if name in SMALL_MIXUP_SETS else {})}
        for name, values in VATParams.DATASET_DEFAULTS.items() if "vat_eps" in values}

    def validate(self):
        require_choice(self, "mixup_pairs", MIXUP_PAIRS)
        require_choice(self, "mixup_divergence", DIVERGENCES)
        require_nonnegative(self, "mixup_weight", "vat_eps", "vat_xi")
        if self.mixup_alpha <= 0:
            raise ConfigError(f"--mixup_alpha must be > 0, got {self.mixup_alpha}")
        if not 0.0 <= self.mixup_rampup <= 1.0:
            raise ConfigError(f"--mixup_rampup must be in [0, 1], got {self.mixup_rampup}")


@dataclasses.dataclass
class ICTParams(AdvMixupParams):
    mixup_pairs: str = param("real_real", "Ends of the interpolation paths (ICT: real_real only).")
    mixup_divergence: str = param("mse", "Consistency divergence: mse or kl.")
    mixup_weight: float = param(10.0, "Weight beta of the consistency term after the ramp-up.")

    def validate(self):
        super().validate()
        if self.mixup_pairs != "real_real":
            raise ConfigError("--method=ict mixes real samples only (--mixup_pairs=real_real); "
                              "for other pairs use --method=advmixup")
