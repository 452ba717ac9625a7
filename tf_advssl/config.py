"""Typed run configuration.

The binaries in ``bin/`` turn flags into a :class:`Config`; everything below
``bin/`` takes a ``Config`` (never flags).  Fields left at ``None`` mean
"the default for this dataset" and are filled in by :func:`resolve`.
A run directory stores the resolved config as ``config.json``.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
from typing import Any, Optional


# Allowed values of the choices among the run's settings and the methods' hyper-parameters.
NORMS = ("linf", "l2")
ATTACKS = ("fgsm", "fgm", "pgd_linf", "pgd_l2")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("vat_linear", "constant", "cosine", "exponential")
PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker")


class ConfigError(ValueError):
    """Bad user input, detected before any work starts. Names the flag."""


@dataclasses.dataclass
class Config:
    # What to train.
    method: str = "vat"
    dataset: str = "two_circles"
    network: Optional[str] = None
    workdir: str = "/tmp/tf_advssl/run"
    overwrite: bool = False

    # Data.
    num_labeled: Optional[int] = None
    balanced: bool = True
    split_seed: int = 0
    validation_size: int = 0
    data_dir: Optional[str] = None
    tfds_manual_dir: Optional[str] = None
    noise: Optional[float] = None          # synthetic sets only
    circles_factor: float = 0.8            # two_circles: inner radius / outer radius (sklearn's factor)
    num_train_synthetic: int = 1500        # synthetic sets: training (= unlabeled) points
    num_test_synthetic: int = 1000
    zca: Optional[bool] = None
    augment_translate: Optional[int] = None   # pixels; 0 disables
    augment_flip: Optional[bool] = None

    # Network.
    mlp_widths: Optional[tuple] = None
    mlp_batch_norm: Optional[bool] = None
    top_bn: bool = False                  # batch norm on the logits (official VAT code's --top_bn)
    mlp_wn_input_noise: Optional[float] = None   # mlp_wn only: Gaussian noise std on the inputs
    mlp_wn_hidden_noise: Optional[float] = None  # mlp_wn only: ... after each hidden ReLU
    dropout: Optional[float] = None
    wn_data_init: int = 500               # weight-normalised layers: data-dependent init on this many inputs (0: off)

    # Optimisation.
    train_steps: Optional[int] = None
    batch_size: Optional[int] = None             # default 32 (the method's, e.g. FixMatch 64)
    unlabeled_batch_size: Optional[int] = None   # default 128 (full batch for synthetic sets)
    eval_batch_size: int = 500
    seed: int = 0
    optimizer: str = "adam"
    learning_rate: Optional[float] = None
    weight_decay: float = 0.0
    momentum: float = 0.9                 # SGD momentum / Adam beta_1
    lr_schedule: Optional[str] = None     # default vat_linear (a method's own, e.g. xVAT's exponential on MNIST)
    lr_decay_start: float = 2.0 / 3.0     # fraction of training after which lr decays linearly to 0
    lr_decay_rate: Optional[float] = None  # exponential: lr * rate ** floor(step / lr_decay_steps); default 0.9
    lr_decay_steps: int = 500             # exponential: steps per decay (an "epoch" of official VAT MNIST)
    eval_ema: bool = False
    bn_recalibration: bool = True         # re-estimate BN statistics on the training inputs after training
    bn_recalibration_examples: int = 10000  # ... on this many (a seeded random subset), in unlabeled batches
    ema_decay: float = 0.999
    jit_compile: bool = False
    # Training steps per call of the compiled train function (Keras' steps_per_execution);
    # evaluations, checkpoints and logs still happen at their steps.  Default 1, larger for
    # the synthetic sets, whose steps are short enough for the per-call overhead to matter.
    steps_per_execution: Optional[int] = None

    # Bookkeeping.
    eval_every: Optional[int] = None
    checkpoint_every: Optional[int] = None
    log_every: int = 50
    verbose: int = 1
    export: bool = True

    # Scale (see docs): precision policy and distribution strategy.
    mixed_precision: str = "float32"
    strategy: str = "default"
    sync_batch_norm: bool = False         # batch-norm statistics over all replicas

    # Method hyper-parameters (fields of the method's Params dataclass).
    method_params: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True, default=list)

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ConfigError(f"unknown config fields: {sorted(unknown)}")
        values = dict(values)
        if values.get("mlp_widths") is not None:
            values["mlp_widths"] = tuple(values["mlp_widths"])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


MLP_WIDTHS = (1200, 600, 300, 150, 150)  # the VAT MNIST MLP: the mlp network's widths on MNIST

# Per-dataset defaults for fields left at None.  Keys not listed fall back to
# "default".
DATASET_DEFAULTS = {
    "default": dict(network="conv_small", mlp_batch_norm=True, num_labeled=1000, train_steps=20000, zca=False,
                    batch_size=32, unlabeled_batch_size=128,
                    augment_translate=2, augment_flip=False, learning_rate=1e-3, dropout=0.5,
                    steps_per_execution=1, lr_schedule="vat_linear", lr_decay_rate=0.9),
    # Synthetic 2-D sets: full-batch unlabeled steps (1500 = num_train_synthetic); VAT's
    # label propagation along the rings needs the whole set in each step (docs/results_two_circles.md).
    "two_circles": dict(network="mlp", mlp_widths=(100, 50), mlp_batch_norm=False, num_labeled=8,
                        noise=0.01, train_steps=10000, zca=False, augment_translate=0, augment_flip=False,
                        learning_rate=3e-3, dropout=0.0, unlabeled_batch_size=1500, steps_per_execution=50),
    "moons": dict(network="mlp", mlp_widths=(100, 50), mlp_batch_norm=False, num_labeled=8, noise=0.1,
                  train_steps=10000, zca=False, augment_translate=0, augment_flip=False,
                  learning_rate=3e-3, dropout=0.0, unlabeled_batch_size=1500, steps_per_execution=50),
    # Feature vectors the library has no entry for (npz: files of vectors): an MLP, no
    # image augmentation.
    "vectors": dict(network="mlp", mlp_widths=MLP_WIDTHS, zca=False, augment_translate=0,
                    augment_flip=False, dropout=0.0),
    # sklearn's 8x8 digits (data.DIGITS): 50 labels, the LeNet-style CNN.
    "digits": dict(network="lenet", num_labeled=50, train_steps=3000, zca=False, augment_translate=2,
                   augment_flip=False, learning_rate=1e-3, dropout=0.5),
    "mnist": dict(network="mlp", mlp_widths=MLP_WIDTHS, num_labeled=100,
                  train_steps=12000, zca=False, augment_translate=0, augment_flip=False,
                  learning_rate=2e-3, dropout=0.0),
    "fashion_mnist": dict(network="mlp", mlp_widths=MLP_WIDTHS, num_labeled=100,
                          train_steps=12000, zca=False, augment_translate=0, augment_flip=False,
                          learning_rate=2e-3, dropout=0.0),
    "svhn_cropped": dict(network="conv_large", num_labeled=1000, train_steps=48000, zca=False,
                         augment_translate=2, augment_flip=False, learning_rate=1e-3, dropout=0.5),
    "cifar10": dict(network="conv_large", num_labeled=4000, train_steps=200000, zca=True,
                    augment_translate=2, augment_flip=True, learning_rate=1e-3, dropout=0.5),
    "cifar100": dict(network="conv_large", num_labeled=10000, train_steps=200000, zca=True,
                     augment_translate=2, augment_flip=True, learning_rate=1e-3, dropout=0.5),
}


# Defaults of a network's own settings, for fields left at None; they replace the dataset's
# (whose mlp_widths are those of ``mlp``).  ``mlp_wn``: the Improved-GAN MNIST discriminator
# (Salimans et al. 2016).  Fields no entry sets stay None for other networks.
NETWORK_DEFAULTS = {
    "mlp_wn": dict(mlp_widths=(1000, 500, 250, 250, 250), mlp_wn_input_noise=0.3, mlp_wn_hidden_noise=0.5),
}


def dataset_family(dataset: str, inputs=None) -> str:
    """The key of DATASET_DEFAULTS that applies to ``dataset``: its own entry, else
    "vectors" for data known (``inputs.is_image`` False) to hold feature vectors, else
    "default" (images)."""
    if dataset in DATASET_DEFAULTS:
        return dataset
    return "vectors" if inputs is not None and not inputs.is_image else "default"


# Images the library has no entry for: random translations of this fraction of the shorter
# image side (2 pixels of MNIST's 28, as the VAT and MixMatch papers), at least one pixel.
TRANSLATE_FRACTION = 2.0 / 28.0


def _scale_to_data(config: Config, family: str, inputs, defaulted: set) -> dict:
    """Defaults that depend on the size of the data, for the fields in ``defaulted`` (filled
    from the tables, not set by the user): batches no larger than the labeled set (a labeled
    batch larger than it repeats examples within the batch) and the training set, and, for
    images the library has no entry for, translations in proportion to the image side."""
    changes = {}
    if "batch_size" in defaulted and config.num_labeled is not None and config.batch_size > config.num_labeled:
        changes["batch_size"] = int(config.num_labeled)
    num_train = getattr(inputs, "num_train", None)
    if num_train is not None and config.validation_size:
        num_train -= config.validation_size
    if ("unlabeled_batch_size" in defaulted and num_train is not None and num_train > 0
            and config.unlabeled_batch_size > num_train):
        changes["unlabeled_batch_size"] = int(num_train)
    shape = getattr(inputs, "input_shape", None)
    if family == "default" and "augment_translate" in defaulted and shape is not None and len(shape) == 3:
        changes["augment_translate"] = max(1, int(round(min(shape[0], shape[1]) * TRANSLATE_FRACTION)))
    return changes


def resolve(config: Config, inputs=None, method_defaults: dict | None = None) -> Config:
    """Fill every ``None`` field with the method's run defaults (``method_defaults``: see
    ``methods.run_defaults``, e.g. FixMatch's batch sizes or FM-GAN's MNIST discriminator),
    else the network's (``NETWORK_DEFAULTS`` of the resolved --network), else the dataset
    default; returns a new Config.  ``inputs``: the data's ``data.InputInfo`` where known:
    feature vectors that the library has no entry for take the "vectors" defaults, and batch
    sizes and (for images it has no entry for) translations scale with the data
    (``_scale_to_data``).  ``methods.resolve`` passes the method's defaults."""
    family = dataset_family(config.dataset, inputs)
    defaults = dict(DATASET_DEFAULTS["default"])
    defaults.update(DATASET_DEFAULTS[family])
    method_defaults = dict(method_defaults or {})
    network = config.network if config.network is not None else method_defaults.get("network", defaults["network"])
    defaults.update(NETWORK_DEFAULTS.get(network, {}))
    defaults.update(method_defaults)
    changes = {}
    for name, value in defaults.items():
        if getattr(config, name, None) is None:
            changes[name] = value
    scaled = _scale_to_data(config.replace(**changes), family, inputs, set(changes))
    changes.update(scaled)
    resolved = config.replace(**changes)
    if resolved.mlp_widths is None:
        resolved = resolved.replace(mlp_widths=MLP_WIDTHS)
    if resolved.eval_every is None:
        resolved = resolved.replace(eval_every=max(1, resolved.train_steps // 10))
    if resolved.checkpoint_every is None:
        resolved = resolved.replace(checkpoint_every=max(1, min(1000, resolved.train_steps // 5)))
    return resolved


def check(config: Config) -> None:
    """The checks of the run's own settings (steps, optimizer, schedule, precision, strategy) on
    a resolved config; raises ConfigError naming the flag and what it allows.  The data, the
    network and the method check theirs (``training.validate`` calls them all)."""
    if config.train_steps <= 0:
        raise ConfigError(f"--train_steps must be > 0, got {config.train_steps}")
    for name in ("eval_every", "checkpoint_every", "log_every"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name} must be a number of steps > 0, got {getattr(config, name)}")
    choices = (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES),
               ("mixed_precision", PRECISION_POLICIES), ("strategy", STRATEGIES))
    for name, allowed in choices:
        if getattr(config, name) not in allowed:
            raise ConfigError(f"--{name}={getattr(config, name)!r} is not one of {', '.join(allowed)}")
    if config.learning_rate <= 0:
        raise ConfigError(f"--learning_rate must be > 0, got {config.learning_rate}")
    if not 0.0 <= config.lr_decay_start <= 1.0:
        raise ConfigError(f"--lr_decay_start must be in [0, 1], got {config.lr_decay_start}")
    if not 0.0 < config.lr_decay_rate <= 1.0:
        raise ConfigError(f"--lr_decay_rate must be in (0, 1], got {config.lr_decay_rate}")
    if config.lr_decay_steps <= 0:
        raise ConfigError(f"--lr_decay_steps must be > 0, got {config.lr_decay_steps}")
    if config.wn_data_init < 0:
        raise ConfigError(f"--wn_data_init must be >= 0 (training inputs; 0: off), got {config.wn_data_init}")
    if config.bn_recalibration_examples < 1:
        raise ConfigError(f"--bn_recalibration_examples must be >= 1, got {config.bn_recalibration_examples}")
    spe = config.steps_per_execution
    if isinstance(spe, bool) or not isinstance(spe, numbers.Integral) or spe < 1:
        raise ConfigError(f"--steps_per_execution must be an integer >= 1, got {spe!r}")
