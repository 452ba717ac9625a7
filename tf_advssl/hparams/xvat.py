"""Hyper-parameters of tf_advssl.methods.xvat."""
import dataclasses
from typing import ClassVar

from tf_advssl.config import ConfigError
from tf_advssl.hparams.common import param, require_choice, require_nonnegative

X_MODES = ("inductive", "transductive")
X_DIVERGENCES = ("kl", "reverse_kl")
TABLE_OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass
class XParams:
    x_mode: str = param("inductive", "Where log alpha comes from: inductive (a network of x) or "
                                     "transductive (a table row per training example).")
    x_weight: float = param(1.0, "Weight of the divergence on masked inputs x * z.")
    l0_lambda: float = param(1.0, "Weight of the expected-L0 term log alpha maximises with the "
                                  "divergence (eq. 12, mean over mask entries).")
    hard_concrete_beta: float = param(2.0 / 3.0, "Hard Concrete temperature beta.")
    hard_concrete_gamma: float = param(-0.1, "Hard Concrete stretch lower end gamma (< 0).")
    hard_concrete_zeta: float = param(1.1, "Hard Concrete stretch upper end zeta (> 1).")
    x_center: float = param(0.0, "Value a zero mask entry moves an input to: x_adv = c + (x - c) * z "
                                 "(0: the paper's x * z; 0.5 on [0, 1] pixels is the reference code's "
                                 "x * z on MNIST centred to [-0.5, 0.5], where masks can also fill background).")
    x_divergence: str = param("kl", "xVAT's divergence: kl = KL(p(x) || p(x * z)) as VAT, reverse_kl = "
                                    "KL(p(x * z) || p(x)) as the reference code's kl=1; p(x) held fixed.")
    log_alpha_init: float = param(0.0, "Initial log alpha (table entries; output bias of the inductive network).")
    log_alpha_init_std: float = param(0.0, "Standard deviation of the initial log alpha, drawn around "
                                           "--log_alpha_init: per table entry, or per output bias of the "
                                           "inductive network (per feature for vectors, one value for "
                                           "images). The reference code's table: 1, around 0.")
    log_alpha_learning_rate: float = param(1e-3, "Adam learning rate of the inductive log-alpha network.")
    log_alpha_table_optimizer: str = param(
        "sgd", "Optimizer of the transductive log-alpha rows: sgd, or adam (lazy: only the batch's rows "
               "and their moments change, keras_workarounds.LazyAdam).")
    log_alpha_table_learning_rate: float = param(
        1.0, "Learning rate of the transductive log-alpha rows (per-example gradient).")

    DATASET_DEFAULTS: ClassVar[dict] = {}

    def validate(self):
        require_choice(self, "x_mode", X_MODES)
        require_choice(self, "x_divergence", X_DIVERGENCES)
        require_choice(self, "log_alpha_table_optimizer", TABLE_OPTIMIZERS)
        require_nonnegative(self, "x_weight", "l0_lambda", "log_alpha_init_std")
        if self.hard_concrete_beta <= 0:
            raise ConfigError(f"--hard_concrete_beta must be > 0, got {self.hard_concrete_beta}")
        if self.hard_concrete_gamma >= 0:
            raise ConfigError(f"--hard_concrete_gamma must be < 0, got {self.hard_concrete_gamma}")
        if self.hard_concrete_zeta <= 1:
            raise ConfigError(f"--hard_concrete_zeta must be > 1, got {self.hard_concrete_zeta}")
        for name in ("log_alpha_learning_rate", "log_alpha_table_learning_rate"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name} must be > 0, got {getattr(self, name)}")


@dataclasses.dataclass
class XVATParams(XParams):
    entmin: bool = param(False, "Add the conditional-entropy term on unlabeled data to the classifier's loss "
                                "(xVAT+EntMin, as VAT+EntMin; not in the xVAT paper).")
    # MNIST: the reference code's transductive MNIST script (scripts/run_l0vat_mnist_transductive.sh:
    # one log alpha row per example drawn N(0, 1), Adam 1e-3 over the dense table, reverse KL,
    # inputs centred so masks pull pixels to 0.5); lazy Adam at 1e-2 moves a visited row about
    # as far as that dense Adam.  MNIST-100, step 6000, seeds 0 / 1 / 2: 5.59 / 2.26 / 3.19 % (6.84 / 2.68 /
    # 2.79 % with SGD at 1e-3, which left the table at its start; 22.48 % at step 3000 for the former defaults:
    # inductive, forward KL, x_center 0, MLP 1200-600-300-150-150) (docs/methods.md).
    DATASET_DEFAULTS: ClassVar[dict] = {
        "mnist": {"x_mode": "transductive", "x_center": 0.5, "x_divergence": "reverse_kl",
                  "log_alpha_init_std": 1.0, "log_alpha_table_optimizer": "adam",
                  "log_alpha_table_learning_rate": 1e-2},
    }
