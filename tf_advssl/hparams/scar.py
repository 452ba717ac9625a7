"""Hyper-parameters of tf_advssl.methods.scar."""
import dataclasses
import os
from typing import ClassVar, Optional

from tf_advssl.config import ATTACKS, Config, ConfigError
from tf_advssl.hparams import PARAMS, make_params
from tf_advssl.hparams.common import param, require_choice, require_nonnegative


def read_config(workdir: str) -> Config:
    """The config.json of the run in ``workdir``."""
    with open(os.path.join(workdir, "config.json")) as f:
        return Config.from_json(f.read())


@dataclasses.dataclass
class SCARParams:
    scar_base: str = param("vat", "Method whose loss stage 2 trains with (any registered method but scar).")
    pretrained_workdir: Optional[str] = param(None, "Run directory of the stage-1 model (any method).")
    scar_eps: float = param(2.0, "Radius of the selection attack in raw input space (pixel values 0..255).")
    scar_attack: str = param("fgsm", "Selection attack: fgsm, fgm, pgd_linf or pgd_l2.")
    scar_pgd_steps: int = param(10, "PGD iterations of the selection attack (step 2.5 eps / steps).")
    scar_epoch_steps: int = param(0, "Steps between selections (0: one pass over the unlabeled set).")
    scar_relabel: bool = param(False, "Select with a frozen copy of the current weights each epoch "
                                      "(eq. 4) instead of the pretrained model (Algorithm 1).")
    base_params: dict = dataclasses.field(default_factory=dict, metadata={
        "help": "Params of --scar_base: the pretrained run's when it used that method, then flags.",
        "flag": False})

    # The 2-D sets train on the whole unlabeled set every step, so one pass is one step and the
    # selection (an attack on every point, and a new data stream) would run at every step: 1000
    # steps took 10 CPU-minutes on moons. A selection every 1000 steps there (10 per default run)
    # is a cost choice, not one made on validation data.
    DATASET_DEFAULTS: ClassVar[dict] = {"two_circles": {"scar_eps": 0.05, "scar_epoch_steps": 1000},
                                        "moons": {"scar_eps": 0.05, "scar_epoch_steps": 1000}}

    def validate(self):
        if self.scar_base not in PARAMS or self.scar_base == "scar":
            allowed = ", ".join(sorted(m for m in PARAMS if m != "scar"))
            raise ConfigError(f"--scar_base={self.scar_base!r} must be one of {allowed}")
        if not self.pretrained_workdir:
            raise ConfigError("--pretrained_workdir is required for --method=scar: a run directory written "
                              "by bin/train.py (stage 1)")
        if not os.path.isfile(os.path.join(self.pretrained_workdir, "config.json")):
            raise ConfigError(f"--pretrained_workdir={self.pretrained_workdir} holds no run (no config.json)")
        require_choice(self, "scar_attack", ATTACKS)
        require_nonnegative(self, "scar_eps", "scar_epoch_steps")
        if self.scar_pgd_steps <= 0:
            raise ConfigError(f"--scar_pgd_steps must be > 0, got {self.scar_pgd_steps}")

    def resolve(self, dataset, overrides):
        """Fill ``base_params``: the pretrained run's params when it used --scar_base (its
        base method's when it is itself a SCAR run), then these, then the flags."""
        pretrained = read_config(self.pretrained_workdir)
        method, inherited = pretrained.method, pretrained.method_params
        if method == "scar":
            method, inherited = inherited["scar_base"], inherited["base_params"]
        values = dict(inherited) if method == self.scar_base else {}
        values.update(self.base_params)
        values.update(overrides)
        base = make_params(self.scar_base, dataset, values)
        return dataclasses.replace(self, base_params=dataclasses.asdict(base))
