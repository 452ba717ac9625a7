"""Step time of each method divided by the step time of a supervised step over the
same number of images (labeled + unlabeled batch), same network, one process.

    python benchmarks/step_time.py --methods=vat,at --setups=mlp_mnist,conv_large_cifar \
        --steps=20 --rounds=3 [--jit=both]

Timings are interleaved in rounds (method A, B, ..., then again) and the median
of the rounds is used, so load from other processes affects all methods alike.
"""
import statistics
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

flags.DEFINE_list("methods", ["vat", "at"], "Methods to time: METHOD[:param=value...] (benchmarks/rows.py).")
flags.DEFINE_list("setups", ["mlp_mnist", "conv_large_cifar"], "Network/input setups.")
flags.DEFINE_integer("steps", 20, "Timed steps per round.")
flags.DEFINE_integer("rounds", 3, "Rounds.")
flags.DEFINE_enum("jit", "both", ["off", "on", "both"], "XLA compilation of the train step.")
flags.DEFINE_integer("batch_size", None, "Labeled batch (default per setup).")
flags.DEFINE_integer("unlabeled_batch_size", None, "Unlabeled batch (default per setup).")

SETUPS = {
    # name: (network, input_shape, num_classes, labeled batch, unlabeled batch, dataset for defaults)
    "mlp_mnist": ("mlp", (28, 28, 1), 10, 64, 256, "mnist"),
    "lenet_mnist": ("lenet", (28, 28, 1), 10, 64, 256, "mnist"),
    "conv_large_cifar": ("conv_large", (32, 32, 3), 10, 32, 128, "cifar10"),
    "mlp_two_circles": ("mlp", (2,), 2, 32, 128, "two_circles"),
}


def make_model(row, setup, jit, labeled, unlabeled):
    from rows import parse_row
    from tf_advssl import runs, training
    from tf_advssl.config import Config
    from tf_advssl.methods import resolve
    from tf_advssl.data import DataSpec

    method, method_params = parse_row(row)
    network, shape, classes, _, _, dataset = SETUPS[setup]
    # The same network for every method: the dataset's MLP widths, not a method's own MNIST
    # default (xVAT's 1200-1200); the batches are set below.
    widths = resolve(Config(method="supervised", dataset=dataset, network=network)).mlp_widths
    config = resolve(Config(method=method, dataset=dataset, network=network, train_steps=1000,
                            jit_compile=jit, augment_translate=0, augment_flip=False, mlp_widths=widths,
                            method_params=method_params))
    config = training.validate(config)
    spec = DataSpec(dataset, shape, classes, "float32", None, len(shape) == 3)
    model = runs.build_model(config, spec, num_train_examples=labeled + unlabeled)
    rng = np.random.RandomState(0)
    if method == "supervised":  # the reference: a supervised step over labeled + unlabeled images
        labeled, unlabeled = labeled + unlabeled, 1
    x_l = rng.rand(labeled, *shape).astype(np.float32)
    y_l = rng.randint(0, classes, labeled).astype(np.int64)
    x_u = rng.rand(unlabeled, *shape).astype(np.float32)
    idx = np.arange(unlabeled, dtype=np.int64)
    dataset = tf.data.Dataset.from_tensors(((x_l, y_l), (x_u, idx))).repeat()
    model.make_train_function()
    return model, iter(dataset)


def time_steps(model, iterator, steps):
    logs = model.train_function(iterator)
    float(logs["loss"])
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_function(iterator)
    float(logs["loss"])  # wait for the last step
    return (time.perf_counter() - start) / steps


def main(argv):
    del argv
    jits = {"off": [False], "on": [True], "both": [False, True]}[flags.FLAGS.jit]
    for setup in flags.FLAGS.setups:
        _, _, _, labeled, unlabeled, _ = SETUPS[setup]
        labeled = flags.FLAGS.batch_size or labeled
        unlabeled = flags.FLAGS.unlabeled_batch_size or unlabeled
        names = ["supervised"] + [m for m in flags.FLAGS.methods if m != "supervised"]
        models = {(name, jit): make_model(name, setup, jit, labeled, unlabeled) for name in names for jit in jits}
        for key, (model, iterator) in models.items():  # trace and compile outside the timing
            time_steps(model, iterator, 1)
        samples = {key: [] for key in models}
        for _ in range(flags.FLAGS.rounds):
            for key, (model, iterator) in models.items():
                samples[key].append(time_steps(model, iterator, flags.FLAGS.steps))
        print(f"\n{setup}: labeled batch {labeled}, unlabeled batch {unlabeled}; supervised reference "
              f"trains on {labeled + unlabeled} labeled images per step")
        print("| method | jit | step ms | ratio to supervised (same jit) | ratio to best supervised |")
        print("|---|---|---|---|---|")
        best_supervised = min(statistics.median(samples[("supervised", j)]) for j in jits)
        for (name, jit), values in samples.items():
            median = statistics.median(values)
            reference = statistics.median(samples[("supervised", jit)])
            print(f"| {name} | {jit} | {1000 * median:.1f} | {median / reference:.2f} | "
                  f"{median / best_supervised:.2f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
