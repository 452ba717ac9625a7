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

import dataclasses
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tf_advssl import data as data_lib
from tf_advssl import distribution, layers, methods
from tf_advssl import config as config_lib
from tf_advssl.config import Config
from tf_advssl.networks import check_network_options
from tf_advssl.runs import (CHECKPOINT_DIR, RunRecord, build_model, check_workdir, check_workdir_path, checkpoint_for,
                            kept_note, prepare_workdir, restore_model, write_atomically)



class TrainingDivergedError(RuntimeError):
    """A loss term became NaN or Inf."""


def validate(config: Config) -> Config:
    """All cheap checks of user input; returns the resolved config. Raises ConfigError.

    Each layer checks its own settings: the run directory (runs), the data (data), the run's
    settings (config.check), the network (networks), the method's hyper-parameters (their
    Params in hparams) and what a method needs beyond them (its validate_config)."""
    methods.get_method(config.method)
    check_workdir_path(config.workdir)
    data_lib.validate(config)  # incl. batch sizes set by the user; resolve() fills the rest with positive defaults
    inputs = data_lib.describe(config)
    config = methods.resolve(config, inputs)
    config_lib.check(config)
    check_network_options(config.network, top_bn=config.top_bn, mlp_wn_input_noise=config.mlp_wn_input_noise,
                          mlp_wn_hidden_noise=config.mlp_wn_hidden_noise, mlp_widths=config.mlp_widths,
                          dropout=config.dropout, inputs=inputs)
    params = methods.make_params(config.method, config.dataset, config.method_params, network=config.network)
    config = config.replace(method_params=dataclasses.asdict(params))
    methods.get_method(config.method).validate_config(config)
    return config


def make_strategy(name: str):
    return distribution.make_strategy(name)


# ----- training -------------------------------------------------------------------

def _set_determinism(seed: int):
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _check_finite(logs: dict, step: int, checkpoint_dir: str):
    for name, value in logs.items():
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"loss term '{name}' is {value} at step {step}; training stopped. {kept_note(checkpoint_dir)}")


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


def weight_norm_data_init(model, data, config: Config) -> int:
    """Before the first step: the data-dependent initialisation of the classifier's
    weight-normalised layers (``layers.weight_norm_data_init``) on ``config.wn_data_init``
    training inputs drawn with ``config.seed``; the EMA teacher starts as a copy.  Returns
    the layers set (0: none, or --wn_data_init=0; nothing is read or drawn then)."""
    if not config.wn_data_init or not layers.layers_of(model.classifier, layers.WEIGHT_NORM_LAYERS):
        return 0
    num = len(data.x_train)
    indices = np.sort(np.random.default_rng(config.seed + 11).permutation(num)[:min(num, config.wn_data_init)])
    x = data.preprocessor(np.asarray(data.x_train[indices]))
    count = layers.weight_norm_data_init(model.classifier, x)
    if model.teacher is not None:
        model.teacher.set_weights(model.classifier.get_weights())
    return count


def check_model_finite(model, probe_inputs, step: int, checkpoint_dir: str) -> None:
    """TrainingDivergedError unless every weight of the model and the logits of its
    evaluated networks on ``probe_inputs`` are finite: a checkpoint is only written of a
    model that still computes numbers (a step whose loss was finite can still leave weights
    that overflow)."""
    variables = [v for v in model.variables if keras.backend.is_float_dtype(v.dtype)]
    if not all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables):
        raise TrainingDivergedError(f"the weights are not finite after step {step}; training stopped. "
                                    f"{kept_note(checkpoint_dir)}")
    for network in (model.classifier, model.teacher):
        if network is not None and not bool(tf.reduce_all(tf.math.is_finite(
                tf.cast(network(probe_inputs, training=False), tf.float32)))):
            raise TrainingDivergedError(
                f"the outputs of {network.name} are not finite after step {step} (the weights have "
                f"blown up); training stopped. {kept_note(checkpoint_dir)}")


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
        weight_norm_data_init(model, data, config)
        model.initialize_weights(config, restore_model)
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
        from tf_advssl import analysis, plotting
        rows, predictions = analysis.adversarial_views(model, data)
        plotting.adversarial_grid_figure(rows, os.path.join(config.workdir, "adversarial_grid.png"), predictions)
    model.write_artifacts(config.workdir, data)
    if config.export:
        from tf_advssl import export
        metrics["export_path"] = export.export_saved_model(model, os.path.join(config.workdir, "export"),
                                                           spec=data.spec, preprocessor=data.preprocessor)
    metrics["wall_time_s"] = time.time() - start_time
    write_atomically(metrics_path, json.dumps(metrics, indent=2))
    return metrics
