"""Helper process of tests/test_distribution.py (started with sys.executable; not a test).

    python tests/distributed_worker.py replicas --out=RESULT.json [--methods=vat,at]
    python tests/distributed_worker.py train --config=CONFIG.json --out=METRICS.json

``replicas``: splits the CPU into two virtual devices (this has to happen before
TensorFlow initialises, hence a process of its own), then for every method
builds the same tiny model twice, under the default strategy (one device) and
under a MirroredStrategy over the two devices, runs two training steps on the
same global batches from ``data.train_dataset`` (split across the replicas by
``distribution.distribute_train_dataset``; one MirroredStrategy and one pair
of streams serve every method: each run takes one batch for the shapes each
replica receives, then trains on the next two) and writes, per method, the largest
difference of every model and optimizer variable (weights, batch-norm moving
statistics, EMA teacher, Temporal Ensembling's table, xVAT's table, generators,
discriminators, optimizer slots, random-generator states) and of the logged
loss terms, plus the batch shapes each replica received.  SCAR is compared last:
its stage 1 is a ``training.run`` of a few supervised steps of the same tiny
network and data in a temporary directory (``training.run`` seeds Keras and
enables op determinism for the rest of the process, hence last), and both of
its runs, after ``initialize_weights`` copied the pretrained weights, draw
their batches from ``model.training_data`` (the labeled set grown by the
examples that survive the selection attack) as ``training.run`` does; the size
and pseudo-labels of the grown set are recorded for both runs.

``train``: ``training.run`` of the config in CONFIG.json (TF_CONFIG from the
environment for --strategy=multi_worker), metrics to METRICS.json.

Both modes control randomness (``replica_consistent_random``), because one
device and two replicas do not draw the same random numbers (each replica
advances its own copy of the same generator state): every per-example draw of
shape (n, ...) is made as the draw of the global batch (R n, ...) and each
replica keeps its own slice, so the noise of an example does not depend on R;
scalar draws (mixup's lambda) are shared anyway.  Random permutations
(``keras.random.shuffle``: mixup partners of AdvMixup, ICT and MixMatch) are
replaced by the identity, since partners from other replicas cannot be
reproduced: for those methods the mixing itself is not compared, the rest of
their step is.  The tiny networks have no dropout and the inputs are 2-D (no
augmentation layers), whose random draws would not be covered by the patch.
Batch norm is synchronized (``sync_batch_norm``: FM-GAN's generator, and the
classifiers of ``BATCH_NORM_METHODS``, run a second time with batch norm).  VAT
and AdvMixup use the exact power iteration (``vat_xi=0``): the float32 finite
difference (xi = 1e-6) carries round-off of ~1e-7 in logit differences of
~1e-6, which a different batch split changes (differences of ~1e-4 in the
update instead of ~1e-7).
"""
import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def replica_consistent_random():
    """Patch keras.random as described in the module docstring (for this process)."""
    import keras
    import tensorflow as tf

    def sliced(draw):
        def patched(shape, *args, **kwargs):
            context = tf.distribute.get_replica_context()
            rank = len(shape) if isinstance(shape, (tuple, list)) else int(shape.shape[0])
            if rank == 0 or context is None or context.num_replicas_in_sync == 1:
                return draw(shape, *args, **kwargs)
            if isinstance(shape, (tuple, list)):
                shape = tf.stack([tf.cast(d, tf.int32) for d in shape])
            shape = tf.cast(shape, tf.int32)
            replicas = context.num_replicas_in_sync
            values = draw(tf.concat([shape[:1] * replicas, shape[1:]], 0), *args, **kwargs)
            start = tf.cast(context.replica_id_in_sync_group, tf.int32) * shape[0]
            return values[start:start + shape[0]]
        return patched

    for name in ("normal", "uniform", "gamma", "randint"):
        setattr(keras.random, name, sliced(getattr(keras.random, name)))
    keras.random.shuffle = lambda x, axis=0, seed=None: x


# Also run with batch norm in the classifier (synchronized); the VAT family is left out:
# its finite-difference power iteration is too noisy in float32 for a sharp comparison and
# the exact one refuses synchronized batch norm (distribution.check_config).
BATCH_NORM_METHODS = ("supervised", "at", "pi_model", "temporal_ensembling", "xvat")

# Also run these method options ("method+name": (method, method params)): xVAT's transductive
# table, whose sparse updates the replicas all-gather, under lazy Adam (moments per row).
OPTION_RUNS = {"xvat+transductive_lazy_adam": ("xvat", {"x_mode": "transductive", "log_alpha_table_optimizer": "adam",
                                                        "log_alpha_table_learning_rate": 0.01})}


# SCAR's stage 1 (``scar_stage1``): steps and learning rate of the supervised run it starts from;
# SCAR_EPS: the selection radius, at which that model's selection keeps some examples and rejects
# others (the labeled set grows from 8 to 12 of the 16 training examples), so that the grown set
# differs from both the labeled set and the whole training set.
SCAR_STAGE1_STEPS, SCAR_STAGE1_LEARNING_RATE, SCAR_EPS = 5, 0.1, 0.3


def tiny_settings(method, batch_norm=False, method_params=None, **changes):
    """The tiny run config of ``method``, not validated."""
    from tf_advssl.config import Config

    return Config(
        method=method, dataset="two_circles", mlp_widths=(8,), mlp_batch_norm=batch_norm, sync_batch_norm=True,
        dropout=0.0, num_train_synthetic=16, num_test_synthetic=8, batch_size=4, unlabeled_batch_size=8,
        train_steps=10, learning_rate=0.01, verbose=0, export=False,
        method_params={"aae_hidden_units": 8, "fm_gan_hidden_units": 8, "fm_gan_noise_dim": 4,
                       "pseudo_label_threshold": 0.0, "vat_xi": 0.0, **(method_params or {})}).replace(**changes)


def tiny_config(method, batch_norm=False, method_params=None):
    from tf_advssl import training

    return training.validate(tiny_settings(method, batch_norm, method_params))


def scar_stage1(workdir):
    """A stage-1 run directory for SCAR: a few supervised steps of the tiny network on the tiny
    data (the fields SCAR must share with it are tiny_config's), written by ``training.run``."""
    from tf_advssl import training

    training.run(tiny_settings("supervised", workdir=workdir, train_steps=SCAR_STAGE1_STEPS,
                               learning_rate=SCAR_STAGE1_LEARNING_RATE))
    return workdir


def grown_train_dataset(config, data, strategy, workdir, record):
    """``model -> iterator`` over the batches of the SSLData that ``model.training_data``
    returns at step 0 (SCAR's grown labeled set), as ``training.run``'s ``make_iterator``
    draws them; the hook writes into ``workdir``.  Size and labels of the grown set go
    into ``record``."""
    import numpy as np

    def make_iterator(model):
        os.makedirs(workdir, exist_ok=True)  # training.run's hook directory exists (run dir or scratch)
        grown = model.training_data(config.replace(workdir=workdir), data, 0)
        labeled = np.asarray(grown.labeled_indices, np.int64)
        record.append({"labeled": labeled.tolist(), "labels": grown.y_train[labeled].astype(int).tolist()})
        return iter(train_dataset(config, grown, strategy))
    return make_iterator


def train_dataset(config, data, strategy):
    """The training batches of ``config`` for ``strategy``, as ``training.run`` draws them."""
    from tf_advssl import distribution

    return distribution.train_batches(strategy, data, config.batch_size, config.unlabeled_batch_size, config.seed)


def run_steps(config, data, iterator, strategy, steps):
    """(variables as numpy, their names, logs of each step, per-replica batch shapes) after
    ``steps`` steps on the batches of ``iterator`` that follow the next one, which only
    gives the shapes (1 + steps batches are taken).  ``iterator`` may also be a function
    ``model -> iterator`` (batches that depend on the model: SCAR's), called after the
    model's ``initialize_weights``, as in ``training.run``."""
    import keras
    import tensorflow as tf

    from tf_advssl import runs

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = runs.build_model(config, data.spec, len(data.x_train))
    # As training.run at step 0 (SCAR: the pretrained weights).
    model.initialize_weights(config, runs.restore_model)
    if callable(iterator):
        iterator = iterator(model)
    first = next(iterator)
    if strategy.num_replicas_in_sync == 1:
        shapes = [[int(d) for d in tf.nest.flatten(first)[0].shape]]
    else:
        shapes = [[int(d) for d in tf.nest.flatten(local)[0].shape] + [int(tf.nest.flatten(local)[2].shape[0])]
                  for local in strategy.experimental_local_results(first)]
    model.make_train_function()
    logs = [{k: float(v) for k, v in model.train_function(iterator).items()} for _ in range(steps)]
    checkpoint = runs.checkpoint_for(model)
    variables = [v.numpy() for v in checkpoint.model_variables + checkpoint.optimizer_variables]
    names = [v.path for v in checkpoint.model_variables + checkpoint.optimizer_variables]
    return variables, names, logs, shapes


def replicas_mode(args):
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    replica_consistent_random()
    import numpy as np

    from tf_advssl import data as data_lib
    from tf_advssl import distribution, methods

    from tf_advssl.config import ConfigError

    names = args.methods.split(",") if args.methods else sorted(methods.METHODS)
    runs = ([(name, False, name, {}) for name in names]
            + [(name, True, name + "+batch_norm", {}) for name in BATCH_NORM_METHODS if name in names]
            + [(name, False, key, params) for key, (name, params) in OPTION_RUNS.items() if name in names])
    runs.sort(key=lambda run: run[0] == "scar")  # last: its stage-1 training.run changes global TF state
    one_device, mirrored = tf.distribute.get_strategy(), distribution.make_strategy("mirrored")
    results, inputs = {}, {}
    scratch = tempfile.TemporaryDirectory(prefix="distributed_worker_")
    for method, batch_norm, key, method_params in runs:
        if method == "scar":
            method_params = {"pretrained_workdir": scar_stage1(os.path.join(scratch.name, "stage1")),
                             "scar_base": "vat", "scar_eps": SCAR_EPS}
        try:
            config = tiny_config(method, batch_norm, method_params)
        except ConfigError as error:  # reported, and failed by the test
            results[key] = {"skipped": str(error)}
            continue
        # One pair of input streams per distinct run config apart from the model: both runs of
        # a method take the same number of batches from their stream, so they stay aligned.
        settings = {k: v for k, v in json.loads(config.to_json()).items()
                    if k not in ("method", "method_params", "mlp_batch_norm")}
        input_key = json.dumps(settings, sort_keys=True)
        if input_key not in inputs:
            data = data_lib.load(config)
            inputs[input_key] = data, [iter(train_dataset(config, data, s)) for s in (one_device, mirrored)]
        data, (batches_one, batches_two) = inputs[input_key]
        grown = []
        if method == "scar":  # batches from the grown labeled set of each run's own model
            batches_one, batches_two = (
                grown_train_dataset(config, data, s, os.path.join(scratch.name, f"{key}-{s.num_replicas_in_sync}"),
                                    grown) for s in (one_device, mirrored))
        one, variable_names, logs_one, shapes_one = run_steps(config, data, batches_one, one_device, 2)
        two, _, logs_two, shapes_two = run_steps(config, data, batches_two, mirrored, 2)
        differences = [float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
                       for a, b in zip(one, two)]
        worst = int(np.argmax(differences))
        moved = max(float(np.max(np.abs(a.astype(np.float64)))) for a in one if a.size)
        results[key] = {
            "max_variable_difference": max(differences), "worst_variable": variable_names[worst],
            "num_variables": len(one), "same_count": len(one) == len(two), "largest_value": moved,
            "max_log_difference": max(abs(a[k] - b[k]) for a, b in zip(logs_one, logs_two) for k in a),
            "shapes_one_device": shapes_one, "shapes_per_replica": shapes_two,
            "num_replicas": mirrored.num_replicas_in_sync,
        }
        if grown:  # SCAR: the labeled set each run trained on, and the one it was grown from
            results[key].update(num_labeled_before=len(data.labeled_indices), num_train=len(data.x_train),
                                grown_one_device=grown[0], grown_two_replicas=grown[1])
        print(key, results[key], flush=True)
    scratch.cleanup()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


def train_mode(args):
    from tf_advssl import training
    from tf_advssl.config import Config

    with open(args.config) as f:
        config = Config.from_json(f.read())
    replica_consistent_random()
    metrics = training.run(config)
    with open(args.out, "w") as f:
        json.dump({k: v for k, v in metrics.items() if k != "history"}, f)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["replicas", "train"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--methods", default="")
    parser.add_argument("--config", default="")
    args = parser.parse_args()
    replicas_mode(args) if args.mode == "replicas" else train_mode(args)


if __name__ == "__main__":
    main()
