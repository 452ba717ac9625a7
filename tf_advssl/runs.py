"""Run directories: building a run's model, checkpoints with the run's record, the checks and
the writes of the directory, and restoring a finished or interrupted run."""
from __future__ import annotations

import contextlib
import json
import os
import shutil

import keras
import tensorflow as tf

from tf_advssl import data as data_lib
from tf_advssl import distribution, methods
from tf_advssl.config import Config, ConfigError
from tf_advssl.networks import build_network
from tf_advssl.optimizers import build_optimizer

CHECKPOINT_DIR = "checkpoints"


@contextlib.contextmanager
def precision_policy(name: str):
    """Keras' global dtype policy is ``name`` inside, the previous one again afterwards:
    layers take the policy in force when they are created, so a model built inside
    computes in ``name`` while nothing else in the process is affected."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_model(config: Config, spec: data_lib.DataSpec, num_train_examples: int):
    """The method's SSLModel with its classifier, compiled, optimizer built.

    Layers compute in ``config.mixed_precision`` (logits and losses in float32); under
    mixed_float16 the optimizers are LossScaleOptimizers.  ``config.sync_batch_norm``:
    batch statistics over all replicas."""
    with precision_policy(config.mixed_precision):
        model = _build_model(config, spec, num_train_examples)
    if config.sync_batch_norm:
        distribution.synchronize_batch_norm(model)
    return model


def _build_model(config: Config, spec: data_lib.DataSpec, num_train_examples: int):
    method_cls = methods.get_method(config.method)
    params = method_cls.Params(**config.method_params)
    classifier = build_network(config.network, spec.input_shape, spec.num_classes,
                               mlp_widths=tuple(config.mlp_widths), mlp_batch_norm=config.mlp_batch_norm,
                               top_bn=config.top_bn, dropout=config.dropout,
                               mlp_wn_input_noise=config.mlp_wn_input_noise,
                               mlp_wn_hidden_noise=config.mlp_wn_hidden_noise, seed=config.seed)
    augmentation = data_lib.make_augmentation(spec, config.augment_translate, config.augment_flip,
                                              seed=config.seed + 1)
    model = method_cls(classifier, params, num_classes=spec.num_classes, total_steps=config.train_steps,
                       augmentation=augmentation, num_train_examples=num_train_examples,
                       input_shape=spec.input_shape, eval_ema=config.eval_ema,
                       ema_decay=config.ema_decay, seed=config.seed + 2)
    model.compile(optimizer=build_optimizer(config), jit_compile=config.jit_compile)
    return model


class RunRecord(tf.train.experimental.PythonState):
    """What a run's metrics need besides its variables, saved inside each checkpoint (so that
    the checkpoint and the record of the steps before it are written as one): the evaluation
    history, the loss terms of the last step, and the time and number of timed steps so far."""

    def __init__(self):
        self.history, self.loss_terms, self.train_time, self.timed_steps = [], {}, 0.0, 0
        self.recalibrated = False  # the batch-norm statistics were re-estimated after training

    def serialize(self):
        return json.dumps({"history": self.history, "loss_terms": self.loss_terms, "train_time": self.train_time,
                           "timed_steps": self.timed_steps, "recalibrated": self.recalibrated})

    def deserialize(self, string_value):
        values = json.loads(string_value.numpy() if hasattr(string_value, "numpy") else string_value)
        self.history, self.loss_terms = values["history"], values["loss_terms"]
        self.train_time, self.timed_steps = values["train_time"], values["timed_steps"]
        self.recalibrated = values.get("recalibrated", False)


def checkpoint_for(model, record: RunRecord | None = None) -> tf.train.Checkpoint:
    """Checkpoint of every model, optimizer and random-state variable (by position), and the
    run's :class:`RunRecord` (a fresh one if ``record`` is None)."""
    optimizers = [model.optimizer] + list(getattr(model, "extra_optimizers", lambda: [])())
    optimizer_variables = [v for opt in optimizers for v in opt.variables]
    return tf.train.Checkpoint(model_variables=list(model.variables),
                               optimizer_variables=optimizer_variables,
                               run_record=record if record is not None else RunRecord())


# ----- run directory --------------------------------------------------------------

def check_workdir_path(workdir: str) -> None:
    """ConfigError naming --workdir unless it is (or can be created as) a writable directory.
    Changes nothing on disk."""
    if not workdir:
        raise ConfigError("--workdir must name a directory")
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--workdir={workdir} is a file, not a directory; choose another --workdir")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"--workdir={workdir} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"--workdir={workdir} is not writable ({existing} does not allow writing); "
                          f"choose another --workdir")


# Config fields that leave a run's results unchanged: a run directory holding a config that
# differs only in these is the same run (the path that reaches it included). data_dir and
# tfds_manual_dir say where tfds finds the data set named by --dataset, not which data it is.
RESULT_NEUTRAL_FIELDS = ("workdir", "overwrite", "verbose", "steps_per_execution", "data_dir", "tfds_manual_dir")


def check_workdir(config: Config) -> str:
    """What ``config.workdir`` holds for this config: "new", "resume" (same config)
    or "replace" (another config, with ``overwrite``). Raises ConfigError for
    another config without ``overwrite``. Changes nothing on disk."""
    path = os.path.join(config.workdir, "config.json")
    if not os.path.exists(path):
        return "new"
    with open(path) as f:
        previous = json.load(f)
    current = json.loads(config.to_json())
    # A field added to Config after that run was written has its default there.
    previous = {**{k: v for k, v in json.loads(Config().to_json()).items() if k not in previous}, **previous}
    differences = sorted(k for k in set(previous) | set(current)
                         if k not in RESULT_NEUTRAL_FIELDS and previous.get(k) != current.get(k))
    if differences and not config.overwrite:
        details = "; ".join(f"{k}: {previous.get(k)!r} there, {current.get(k)!r} now" for k in differences[:4])
        raise ConfigError(
            f"--workdir={config.workdir} holds a run with a different config ({details}). Choose "
            f"another --workdir, or pass --overwrite to delete that run (its checkpoints and results; "
            f"earlier exports are kept) and start this one there")
    return "replace" if (differences or config.overwrite) else "resume"


def prepare_workdir(config: Config, state: str) -> None:
    """Create the run directory (clearing all but ``export/`` when replacing) and write config.json."""
    try:
        if state == "replace":
            for name in os.listdir(config.workdir):
                if name != "export":
                    target = os.path.join(config.workdir, name)
                    shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
        os.makedirs(config.workdir, exist_ok=True)
        write_atomically(os.path.join(config.workdir, "config.json"), config.to_json())
    except OSError as error:
        raise ConfigError(f"--workdir={config.workdir}: cannot write the run directory: {error}") from error


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed into place."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def load_run(workdir: str):
    """(config, spec, num_train_examples, preprocessor) of an existing run directory."""
    with open(os.path.join(workdir, "config.json")) as f:
        config = Config.from_json(f.read())
    with open(os.path.join(workdir, "data_spec.json")) as f:
        info = json.load(f)
    spec = data_lib.DataSpec.from_dict(info["spec"])
    preprocessor = data_lib.Preprocessor.load(os.path.join(workdir, "preprocessor.npz"))
    return config, spec, info["num_train_examples"], preprocessor


def restore_model(workdir: str):
    """Rebuild a run's model and restore its latest checkpoint. Returns (model, config, spec, preprocessor)."""
    config, spec, num_train, preprocessor = load_run(workdir)
    model = build_model(config, spec, num_train)
    latest = tf.train.latest_checkpoint(os.path.join(workdir, CHECKPOINT_DIR))
    if latest is None:
        raise ConfigError(f"--workdir={workdir} has no checkpoint to restore")
    checkpoint_for(model).restore(latest).assert_consumed()
    return model, config, spec, preprocessor


def kept_note(checkpoint_dir: str) -> str:
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest is None:
        return "No checkpoint had been written."
    return f"The last good checkpoint ({os.path.basename(latest)}) is kept in the run directory."
