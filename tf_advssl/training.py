"""The training run: config in, run directory out.

``run(config)`` validates the config, prepares the run directory (refusing a
directory that holds a run with another config unless ``overwrite``), loads
the data, builds the method, and trains with a Keras progress bar, TensorBoard
logs and periodic checkpoints.  Running the same config again resumes from
the last checkpoint: model, optimizer, random-generator states and the data
position are restored, so an interrupted run ends where an uninterrupted one
would.  ``steps_per_execution`` steps run per call of the compiled train
function (fewer where a log, evaluation, checkpoint or the end comes first), so
everything happens at the same steps and with the same results as one step per
call.  A NaN or Inf in any loss term stops training with
:class:`TrainingDivergedError` naming the term and step (also inside a block
of steps); the last good checkpoint stays on disk.  At the end the run
directory holds ``config.json``, ``metrics.json``, ``export/<version>/``
(SavedModel) and, for 2-D data, ``decision_boundary.png`` (for images
``adversarial_grid.png``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tf_advssl import config as config_lib
from tf_advssl import data as data_lib
from tf_advssl import distribution, layers, methods
from tf_advssl.config import Config, ConfigError
from tf_advssl.networks import build_network, check_network_options

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("vat_linear", "constant", "cosine", "exponential")
PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("default", "mirrored", "multi_worker")
CHECKPOINT_DIR = "checkpoints"


class TrainingDivergedError(RuntimeError):
    """A loss term became NaN or Inf."""


class VATLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant ``base`` until ``decay_start * total_steps``, then linearly to 0 (VAT)."""

    def __init__(self, base, total_steps, decay_start):
        self.base, self.total_steps, self.decay_start = float(base), int(total_steps), float(decay_start)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        start = self.decay_start * self.total_steps
        fraction = (self.total_steps - step) / max(1.0, self.total_steps - start)
        return self.base * tf.clip_by_value(fraction, 0.0, 1.0)

    def get_config(self):
        return dict(base=self.base, total_steps=self.total_steps, decay_start=self.decay_start)


def validate(config: Config) -> Config:
    """All cheap checks of user input; returns the resolved config. Raises ConfigError."""
    methods.get_method(config.method)
    check_workdir_path(config.workdir)
    data_lib.validate(config)  # incl. batch sizes set by the user; resolve() fills the rest with positive defaults
    inputs = data_lib.describe(config)
    config = config_lib.resolve(config, inputs)
    if config.train_steps <= 0:
        raise ConfigError(f"--train_steps must be > 0, got {config.train_steps}")
    for name in ("eval_every", "checkpoint_every", "log_every"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name} must be a number of steps > 0, got {getattr(config, name)}")
    checks = (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES),
              ("mixed_precision", PRECISION_POLICIES), ("strategy", STRATEGIES))
    for name, allowed in checks:
        if getattr(config, name) not in allowed:
            raise ConfigError(f"--{name}={getattr(config, name)!r} is not one of {', '.join(allowed)}")
    if config.learning_rate <= 0:
        raise ConfigError(f"--learning_rate must be > 0, got {config.learning_rate}")
    if not 0.0 <= config.lr_decay_start <= 1.0:
        raise ConfigError(f"--lr_decay_start must be in [0, 1], got {config.lr_decay_start}")
    check_network_options(config.network, top_bn=config.top_bn, mlp_wn_input_noise=config.mlp_wn_input_noise,
                          mlp_wn_hidden_noise=config.mlp_wn_hidden_noise, mlp_widths=config.mlp_widths,
                          dropout=config.dropout, inputs=inputs)
    if config.bn_recalibration_examples < 1:
        raise ConfigError(f"--bn_recalibration_examples must be >= 1, got {config.bn_recalibration_examples}")
    if not 0.0 < config.lr_decay_rate <= 1.0:
        raise ConfigError(f"--lr_decay_rate must be in (0, 1], got {config.lr_decay_rate}")
    if config.lr_decay_steps <= 0:
        raise ConfigError(f"--lr_decay_steps must be > 0, got {config.lr_decay_steps}")
    spe = config.steps_per_execution
    if isinstance(spe, bool) or not isinstance(spe, (int, np.integer)) or spe < 1:
        raise ConfigError(f"--steps_per_execution must be an integer >= 1, got {spe!r}")
    params = methods.make_params(config.method, config.dataset, config.method_params, network=config.network)
    config = config.replace(method_params=dataclasses.asdict(params))
    methods.get_method(config.method).validate_config(config)
    return config


def make_strategy(name: str):
    return distribution.make_strategy(name)


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


def build_optimizer(config: Config):
    if config.lr_schedule == "vat_linear":
        learning_rate = VATLinearDecay(config.learning_rate, config.train_steps, config.lr_decay_start)
    elif config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.train_steps)
    elif config.lr_schedule == "exponential":  # the official VAT MNIST code: x0.9 every 500 steps
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            config.learning_rate, config.lr_decay_steps, config.lr_decay_rate, staircase=True)
    else:
        learning_rate = config.learning_rate
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate, beta_1=config.momentum,
                                     weight_decay=config.weight_decay or None)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, beta_1=config.momentum,
                                      weight_decay=config.weight_decay)
    return keras.optimizers.SGD(learning_rate, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay or None)


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
    model.optimizer.build(model.trainable_for_loss())
    model.build_extra()
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
# differs only in these is the same run (the path that reaches it included).
RESULT_NEUTRAL_FIELDS = ("workdir", "overwrite", "verbose", "steps_per_execution")


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


# ----- training -------------------------------------------------------------------

def _set_determinism(seed: int):
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _kept(checkpoint_dir: str) -> str:
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest is None:
        return "No checkpoint had been written."
    return f"The last good checkpoint ({os.path.basename(latest)}) is kept in the run directory."


def _check_finite(logs: dict, step: int, checkpoint_dir: str):
    for name, value in logs.items():
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"loss term '{name}' is {value} at step {step}; training stopped. {_kept(checkpoint_dir)}")


def steps_to_next_event(step: int, end_step: int, periods, limit: int) -> int:
    """How many steps one call of the train function runs from ``step`` on: at most
    ``limit``, and no further than the next multiple of any of ``periods`` (logging,
    evaluation, checkpoint, data refresh; 0 ignored) or ``end_step``, so that whatever
    happens after a step still happens after exactly that step."""
    next_event = min([end_step] + [(step // p + 1) * p for p in periods if p > 0])
    return max(1, min(limit, next_event - step))


def evaluate(model, data, split: str, batch_size: int) -> float:
    """Error rate in percent on ``split`` ("test" or "val")."""
    dataset = data_lib.eval_dataset(data, split, batch_size)
    if distribution.is_multi_worker(model.distribute_strategy):
        return distribution.evaluate_locally(model, dataset)
    result = model.evaluate(dataset, verbose=0, return_dict=True)
    return float(result["error"])


def recalibrate_batch_norm(model, data, config: Config) -> int:
    """Re-estimate the batch-norm statistics of the evaluated network(s) (classifier, and
    the EMA teacher if it exists) on ``bn_recalibration_examples`` training inputs drawn
    with ``config.seed``, in batches of ``unlabeled_batch_size``, one pass for both
    (``layers.recalibrate_batch_norm``; the official VAT code does this at the end of
    MNIST training).  The inputs go through the run's training augmentation (translations,
    flips): the statistics must describe the inputs the later layers were fitted to, and on
    a network trained with translations, statistics of untranslated images doubled the
    error (docs/defaults.md).  Returns the batches used (0: no batch norm, no data read)."""
    num = len(data.x_train)
    indices = np.random.default_rng(config.seed + 7).permutation(num)[:min(num, config.bn_recalibration_examples)]
    networks = [n for n in (model.classifier, model.teacher) if n is not None]
    batches = data_lib.input_batches(data, indices, config.unlabeled_batch_size)
    return layers.recalibrate_batch_norm(networks, (model.augment(x) for x in batches))


def check_model_finite(model, probe_inputs, step: int, checkpoint_dir: str) -> None:
    """TrainingDivergedError unless every weight of the model and the logits of its
    evaluated networks on ``probe_inputs`` are finite: a checkpoint is only written of a
    model that still computes numbers (a step whose loss was finite can still leave weights
    that overflow)."""
    variables = [v for v in model.variables if keras.backend.is_float_dtype(v.dtype)]
    if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables):
        raise TrainingDivergedError(f"the weights are not finite after step {step}; training stopped. "
                                    f"{_kept(checkpoint_dir)}")
    for network in (model.classifier, model.teacher):
        if network is not None and not bool(tf.reduce_all(tf.math.is_finite(
                tf.cast(network(probe_inputs, training=False), tf.float32)))):
            raise TrainingDivergedError(
                f"the outputs of {network.name} are not finite after step {step} (the weights have "
                f"blown up); training stopped. {_kept(checkpoint_dir)}")


def run(config: Config, stop_after: int | None = None) -> dict:
    """Train (or resume) the run described by ``config``; returns the metrics dict.

    Everything that can be checked from the config and the data is checked before the
    first file is written.  ``stop_after``: stop after this many steps of this invocation
    without a final checkpoint, as a killed process would — used to test resumption.
    """
    start_time = time.time()
    config = validate(config)
    strategy = make_strategy(config.strategy)  # first: multi-worker configures collectives at start-up
    distribution.check_config(config, strategy.num_replicas_in_sync)
    chief = distribution.is_chief(strategy)  # writes the run directory; other workers write to scratch
    _set_determinism(config.seed)
    state = check_workdir(config)
    metrics_path = os.path.join(config.workdir, "metrics.json")
    if state == "resume" and os.path.exists(metrics_path):
        with open(metrics_path) as f:
            print(f"Run in {config.workdir} is complete; nothing to do.")
            return json.load(f)

    data = data_lib.load(config)  # may still reject the input: before anything is written
    with strategy.scope():
        model = build_model(config, data.spec, len(data.x_train))  # rejects networks that do not fit the data
    output_dir = config.workdir if chief else distribution.scratch_dir(config.workdir, strategy)
    if chief:
        prepare_workdir(config, state)
        data.preprocessor.save(os.path.join(config.workdir, "preprocessor.npz"))
        write_atomically(os.path.join(config.workdir, "data_spec.json"),
                         json.dumps({"spec": data.spec.to_dict(), "num_train_examples": int(len(data.x_train))},
                                    indent=2))

    record = RunRecord()
    checkpoint = checkpoint_for(model, record)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(output_dir, CHECKPOINT_DIR),
                                         max_to_keep=2)
    latest = tf.train.latest_checkpoint(os.path.join(config.workdir, CHECKPOINT_DIR))  # the chief's
    if latest and (chief or state == "resume"):
        checkpoint.restore(latest).assert_consumed()
    start_step = int(model.optimizer.iterations.numpy())
    if start_step:
        print(f"Resuming {config.workdir} from step {start_step}.")
    else:
        model.initialize_weights(config)
    probe_inputs = data.preprocessor(np.asarray(data.x_train[data.labeled_indices[:32]]))

    # The hook may write files (SCAR's selection records): other workers write them to scratch.
    hook_config = config if chief else config.replace(workdir=output_dir)

    def make_iterator(from_step):
        return iter(distribution.train_batches(strategy, model.training_data(hook_config, data, from_step),
                                               config.batch_size, config.unlabeled_batch_size, config.seed,
                                               start_step=from_step))

    iterator = make_iterator(start_step)
    train_function = distribution.make_multi_step_function(model, strategy)
    writer = tf.summary.create_file_writer(os.path.join(output_dir, "tensorboard"))
    progbar = keras.utils.Progbar(config.train_steps, verbose=config.verbose,
                                  stateful_metrics=list(model.loss_names) + ["loss", "test_error"])
    step = start_step
    end_step = config.train_steps if stop_after is None else min(config.train_steps, start_step + stop_after)
    values: list = list(record.loss_terms.items())
    try:
        while step < end_step:
            if model.data_refresh_steps and step > start_step and step % model.data_refresh_steps == 0:
                iterator = make_iterator(step)
            periods = (config.log_every, config.eval_every, config.checkpoint_every, model.data_refresh_steps)
            count = steps_to_next_event(step, end_step, periods, config.steps_per_execution)
            tick = time.perf_counter()
            # Up to ``count`` steps in one call; fewer only if a step's logs are not finite (then
            # ``logs`` are that step's, and _check_finite below stops training at it).
            logs, steps_run = train_function(iterator, tf.constant(count, tf.int32))
            logs = {k: float(v) for k, v in logs.items()}
            steps_run = int(steps_run)
            if step > start_step:  # the first call traces and compiles
                record.train_time += time.perf_counter() - tick
                record.timed_steps += steps_run
            step += steps_run
            _check_finite(logs, step, manager.directory)
            record.loss_terms = logs
            values = list(logs.items())
            if step % config.log_every == 0 or step == end_step:
                with writer.as_default(step=step):
                    for name, value in logs.items():
                        tf.summary.scalar(f"train/{name}", value)
                    tf.summary.scalar("train/learning_rate", float(model.optimizer.learning_rate))
            if step % config.eval_every == 0 and step < config.train_steps:
                test_error = evaluate(model, data, "test", config.eval_batch_size)
                values.append(("test_error", test_error))
                record.history.append({"step": step, "test_error": test_error})
                with writer.as_default(step=step):
                    tf.summary.scalar("eval/test_error", test_error)
            if step < config.train_steps:  # the last line shows the final test error (below)
                progbar.update(step, values=values)
            if step % config.checkpoint_every == 0 or step == config.train_steps:
                check_model_finite(model, probe_inputs, step, manager.directory)
                manager.save(checkpoint_number=step)  # with the record: one write
    except TrainingDivergedError:
        if config.verbose:
            print()  # end the progress bar's line before the error
        raise
    writer.flush()
    if step < config.train_steps:
        progbar.update(step, values=values, finalize=True)
        return {"train_steps": step, "interrupted": True, "loss_terms": record.loss_terms}

    if config.bn_recalibration and not record.recalibrated and recalibrate_batch_norm(model, data, config):
        record.recalibrated = True
        manager.save(checkpoint_number=step)  # the exported / restored model carries the new statistics

    metrics = {
        "method": config.method, "dataset": config.dataset, "num_labeled": config.num_labeled,
        "seed": config.seed, "train_steps": step,
        "test_error": evaluate(model, data, "test", config.eval_batch_size),
        "steps_per_second": (record.timed_steps / record.train_time) if record.train_time > 0 else None,
        "loss_terms": dict(record.loss_terms),
        "history": list(record.history),
    }
    if data.x_val is not None and len(data.x_val):
        metrics["val_error"] = evaluate(model, data, "val", config.eval_batch_size)
    with writer.as_default(step=step):
        tf.summary.scalar("eval/test_error", metrics["test_error"])
    writer.flush()
    progbar.update(step, values=values + [("test_error", metrics["test_error"])], finalize=True)
    print(f"test error {metrics['test_error']:.2f} % after {step} steps")
    if not chief:  # the chief writes the run directory's files
        shutil.rmtree(output_dir, ignore_errors=True)
        return metrics

    if data.spec.input_shape == (2,):
        from tf_advssl import plotting
        plotting.decision_boundary_figure(
            [(f"{config.method} (test error {metrics['test_error']:.2f} %)", model, data)],
            os.path.join(config.workdir, "decision_boundary.png"))
    elif data.spec.is_image:
        from tf_advssl import plotting
        rows, predictions = plotting.adversarial_views(model, data)
        plotting.adversarial_grid_figure(rows, os.path.join(config.workdir, "adversarial_grid.png"), predictions)
    model.write_artifacts(config.workdir, data)
    if config.export:
        from tf_advssl import export
        metrics["export_path"] = export.export_run_model(model, data.spec, data.preprocessor,
                                                         os.path.join(config.workdir, "export"))
    metrics["wall_time_s"] = time.time() - start_time
    write_atomically(metrics_path, json.dumps(metrics, indent=2))
    return metrics
