"""One training step on several devices and hosts (``tf.distribute``).

    --strategy=default       one device
    --strategy=mirrored      MirroredStrategy over the visible devices of this host
    --strategy=multi_worker  MultiWorkerMirroredStrategy over the hosts listed in TF_CONFIG
                             (every host runs the same command; README, "Training on a cluster")

What makes R replicas compute the single-device update of a global batch:

* Input.  Each step's global batch is what the flags say (--batch_size labeled,
  --unlabeled_batch_size unlabeled examples).  It is cut into R equal
  consecutive slices and slice r goes to replica r (``train_dataset``; both
  batch sizes must divide by R).  Each host reads only its own replicas' slices.
* Losses.  A replica's terms are means over its slice; the train steps divide
  them by R (``scale_loss_for_distribution``) and the optimizer sums the
  gradients of all replicas: sum_r (1/R) mean_r = the global mean.  A term that
  is not a mean of per-example values uses global batch statistics instead:
  ``replica_mean`` (FM-GAN's feature means) and synchronized batch norm
  (``--sync_batch_norm``; without it every replica normalises with the
  statistics of its own slice, and keeps its own moving averages: the
  checkpoint and the export hold replica 0's).
* Per-example state (Temporal Ensembling's prediction table; the xVAT
  transductive table is trainable and goes through the optimizer's sum): every
  replica applies the update of the whole global batch (``gather_replicas``),
  so all copies stay identical.
* Random draws.  Every replica advances its own copy of the same generator
  state, so replica r draws the same numbers for row i of its slice as replica
  0 does for row i of its slice (noise is independent of the data, but
  correlated across replicas); mixup partners (AdvMixup, ICT, MixMatch) are
  chosen within a replica's slice.  These are the places where R replicas do
  not reproduce one device; ``tests/distributed_worker.py`` states how the
  equality test controls them.

Multi-worker runs: the chief (task ``chief``, else ``worker`` 0) writes the run
directory; the other workers write their checkpoints and logs to a scratch
directory and, when resuming, read the chief's checkpoints, so resumption
needs the run directory on a filesystem all hosts see.
"""
from __future__ import annotations

import json
import os
import tempfile

import tensorflow as tf

from tf_advssl import data as data_lib
from tf_advssl import layers, losses
from tf_advssl.config import STRATEGIES, ConfigError



def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy of ``--strategy=name``.  ``multi_worker`` must be created before
    TensorFlow runs any op in the process (collective ops are configured at start-up)."""
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        if devices[0].device_type == "GPU":
            return tf.distribute.MirroredStrategy()  # NCCL all-reduce
        # CPU devices: reduce on one device.  TF's default collective all-reduce misorders the
        # collectives of steps with two optimizers (AdvGen, AAE, FM-GAN) on virtual CPU devices.
        return tf.distribute.MirroredStrategy([d.name for d in devices],
                                              cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("--strategy=multi_worker needs the TF_CONFIG environment variable "
                              "(cluster and this task); see README, 'Training on a cluster'")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "default":
        return tf.distribute.get_strategy()
    raise ConfigError(f"--strategy={name!r} is not one of {', '.join(STRATEGIES)}")


def task(strategy) -> tuple:
    """(task_type, task_id) of this process in a multi-worker cluster, (None, 0) otherwise."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy) -> bool:
    """True for the process that writes the run directory (the only one outside multi-worker)."""
    task_type, task_id = task(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def scratch_dir(workdir: str, strategy) -> str:
    """Where a non-chief worker writes (checkpoints, logs): a fresh temporary directory."""
    task_type, task_id = task(strategy)
    name = os.path.basename(os.path.normpath(workdir)) or "run"
    return tempfile.mkdtemp(prefix=f"tf_advssl_{name}_{task_type}{task_id}_")


def check_config(config, num_replicas: int) -> None:
    """What a run on ``num_replicas`` replicas needs. Raises ConfigError.

    Both global batch sizes must split evenly over the replicas.  Synchronized batch
    norm cannot be combined with VAT's exact power iteration (--vat_xi=0, or any mixed
    precision policy): its forward-mode product does not pass through the cross-replica
    statistics."""
    for name in ("batch_size", "unlabeled_batch_size"):
        value = getattr(config, name)
        if value % num_replicas:
            raise ConfigError(f"--{name}={value} does not divide by the {num_replicas} replicas of "
                              f"--strategy={config.strategy}; the global batch is split evenly")
    exact_vat = "vat_xi" in config.method_params and (
        config.method_params["vat_xi"] == 0 or config.mixed_precision != "float32")
    if config.sync_batch_norm and num_replicas > 1 and exact_vat:
        raise ConfigError(f"--sync_batch_norm with --method={config.method} needs the finite-difference power "
                          f"iteration (--vat_xi > 0, --mixed_precision=float32); the exact one does not "
                          f"pass through cross-replica batch statistics")


def replica_slices(input_context) -> tuple:
    """(num_replicas, first, count): the replicas whose slices this input pipeline reads."""
    per_pipeline = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    return (input_context.num_replicas_in_sync, input_context.input_pipeline_id * per_pipeline,
            per_pipeline)


def distribute_train_dataset(strategy, make_dataset):
    """A distributed dataset of per-replica batches.

    ``make_dataset(num_replicas, first, count)`` returns the stream that yields,
    for each step, the slices of replicas ``first .. first + count - 1`` one
    after the other (``data.train_dataset`` does); one element per local replica
    and step is what ``distribute_datasets_from_function`` hands out, in order.
    """
    return strategy.distribute_datasets_from_function(
        lambda context: make_dataset(*replica_slices(context)))


def train_batches(strategy, data, batch_size: int, unlabeled_batch_size: int, seed: int, start_step: int = 0):
    """The training stream of ``data`` (``data.train_dataset``) for ``strategy``: the global
    batches on the default strategy (its one input pipeline reads every replica slice of the
    one replica), each replica's slices on the others (``distribute_train_dataset``)."""
    return distribute_train_dataset(strategy, lambda replicas, first, count: data_lib.train_dataset(
        data, batch_size, unlabeled_batch_size, seed=seed, start_step=start_step, num_replicas=replicas,
        first_replica=first, num_local_replicas=count))


def _mean_over_replicas(strategy, value):
    """A logged scalar averaged over all replicas (the value itself on one replica)."""
    if is_multi_worker(strategy):
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
    if isinstance(value, tf.distribute.DistributedValues):  # as Keras' reduce_per_replica(..., "auto")
        return tf.reduce_mean(strategy.experimental_local_results(value), axis=0)
    return value


def make_step_function(model, strategy):
    """``fn(data) -> logs``: one training step of ``model`` on one distributed batch, each
    logged scalar averaged over all replicas; a tf.function (XLA with ``model.jit_compile``)
    unless ``model.run_eagerly``.

    Keras reduces the logs of a MultiWorkerMirroredStrategy step with ``strategy.reduce(MEAN,
    v, axis=0)``, which fails on scalars ("Invalid reduction dimension 0 for input with 0
    dimensions"); this step reduces with ``axis=None`` (a cross-worker mean) there."""

    def one_step(data):
        logs = strategy.run(model.train_step, args=(data,))
        return {name: _mean_over_replicas(strategy, value) for name, value in logs.items()}

    if not model.run_eagerly:
        one_step = tf.function(one_step, reduce_retracing=True, jit_compile=model.jit_compile)
    return one_step


def all_finite(logs):
    """Scalar bool tensor: every floating-point value in ``logs`` is finite."""
    checks = [tf.reduce_all(tf.math.is_finite(value)) for value in logs.values() if value.dtype.is_floating]
    return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)


def make_multi_step_function(model, strategy):
    """``fn(iterator, num_steps) -> (logs, steps_run)``: up to ``num_steps`` (an int32 scalar
    tensor, >= 1; a tensor, so that no count traces again) training steps of ``model`` on the
    next batches of ``iterator`` in one call, without returning to Python between steps
    (as Keras' ``compile(steps_per_execution=K)``, but with a count that may change from
    call to call).  Returns the logs of the last step run, each averaged over all replicas,
    and the number of steps run: the block stops early after the first step whose logs hold
    a NaN or Inf, so ``steps_run < num_steps`` means that the returned logs, those of step
    ``steps_run`` of the block, are not finite (the check reads the logs reduced over all
    replicas, so every worker of a multi-worker run stops after the same step).  Step ``i``
    of a block is exactly the step that the ``i``-th call of Keras' ``model.train_function``
    would run."""
    one_step = make_step_function(model, strategy)

    def multi_step(iterator, num_steps):
        logs = one_step(next(iterator))

        def more(steps_run, logs):
            return tf.logical_and(steps_run < num_steps, all_finite(logs))

        def step(steps_run, logs):
            return steps_run + 1, one_step(next(iterator))

        steps_run, logs = tf.while_loop(more, step, (tf.constant(1, tf.int32), logs))
        return logs, steps_run

    if not model.run_eagerly:
        multi_step = tf.function(multi_step)
    return multi_step


def evaluate_locally(model, dataset) -> float:
    """Error rate in percent of ``model`` (inference mode) on the ``(x, y)`` batches of
    ``dataset``, computed by this process alone on the whole dataset: multi-worker runs
    evaluate this way, since Keras' ``model.evaluate`` fails under MultiWorkerMirroredStrategy
    as its train function does.  The weights are identical on every worker, so every
    worker reports the single-device error.  Eager: nothing is traced again at each evaluation."""
    errors, count = 0.0, 0
    for x, y in dataset:
        errors += float(tf.reduce_sum(losses.error_count(y, model(x, training=False))))
        count += int(y.shape[0])
    return 100.0 * errors / max(count, 1)


def is_multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def gather_replicas(value):
    """``value`` of every replica concatenated along axis 0 in replica order (the
    global batch); ``value`` itself on a single replica.  Call in replica context."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_gather(value, axis=0)


def replica_mean(value):
    """Mean of ``value`` over the replicas (differentiable: the gradient is averaged
    back); ``value`` itself on a single replica.  With equal slices, the replica mean
    of per-slice batch means is the global batch mean."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.MEAN, value)


def synchronize_batch_norm(model) -> int:
    """Make every BatchNormalization layer in ``model`` compute its batch statistics
    over all replicas (Keras ``synchronized=True``). Returns the number of layers."""
    found = layers.batch_norm_layers(model)
    for layer in found:
        layer.synchronized = True
    return len(found)


def cluster_config(hosts, task_type: str, task_id: int) -> str:
    """TF_CONFIG for a cluster of ``hosts`` ("host:port" of each worker, chief first)."""
    return json.dumps({"cluster": {"worker": list(hosts)}, "task": {"type": task_type, "index": int(task_id)}})
