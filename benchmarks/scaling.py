"""Steps/s of VAT on MNIST-shaped data (MLP 1200-600-300-150-150, batch norm) with one and two
virtual CPU devices, one and two worker processes, and over batch and dataset sizes (with the
peak resident memory of each process).  Every measurement runs in a fresh process.

    python benchmarks/scaling.py --steps=20 --batches=32:128,64:256,128:512 \
        --dataset_sizes=10000,60000,240000,960000 --out=/tmp/bench_scaling

Inputs are random uint8 images (28x28x1), labels random: the timing does not depend on them.
They are written once to ``--out`` as ``npz:DIR`` directories of ``.npy`` files (the
streamed path that tfds sets also take: memory maps, only each batch's rows are read) and,
for comparison, as ``.npz`` files (read into memory); each child loads them through
``data.load`` like ``bin/train.py``.  Peak RSS is VmHWM of the (first) child: it includes
the TensorFlow runtime (~1 GiB) and the memory-mapped pages the process touched; anon RSS
(RssAnon, at the end) is the process's private memory, without those file pages.
"""
import json
import os
import socket
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_integer("steps", 20, "Timed steps (after 3 untimed ones).")
flags.DEFINE_list("batches", ["32:128", "64:256", "128:512"], "labeled:unlabeled global batch sizes.")
flags.DEFINE_list("dataset_sizes", ["10000", "60000", "240000", "960000"],
                  "Training-set sizes of the memory sweep (streamed).")
flags.DEFINE_list("in_memory_sizes", ["10000", "60000", "240000"],
                  "Training-set sizes of the same sweep with the data read into memory (.npz).")
flags.DEFINE_list("sections", ["strategies", "batches", "datasets"], "Which groups of rows to measure.")
flags.DEFINE_string("out", "/tmp/bench_scaling", "Where the generated datasets are written.")
flags.DEFINE_string("child", None, "Internal: JSON of one measurement to run in this process.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(spec):
    """Run one measurement in this process; returns steps/s and peak RSS (MiB)."""
    import tensorflow as tf

    if spec.get("devices", 1) > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * spec["devices"])

    from tf_advssl import data as data_lib
    from tf_advssl import distribution, runs, training
    from tf_advssl.config import Config

    strategy = distribution.make_strategy(spec["strategy"])
    config = training.validate(Config(method="vat", dataset="mnist", batch_size=spec["batch"][0],
                                      unlabeled_batch_size=spec["batch"][1], train_steps=1000,
                                      strategy=spec["strategy"], mixed_precision=spec.get("precision", "float32")))
    data = data_lib.load(training.validate(config.replace(dataset=spec["dataset"])))
    assert data_lib.is_streamed(data.x_train) == spec["dataset"].endswith(".npy_dir"), spec
    with strategy.scope():
        model = runs.build_model(config, data.spec, len(data.x_train))

    iterator = iter(distribution.train_batches(strategy, data, config.batch_size, config.unlabeled_batch_size, seed=0))
    multi_step = distribution.make_multi_step_function(model, strategy)  # training.run's, one step per call
    one = tf.constant(1, tf.int32)
    for _ in range(3):
        float(multi_step(iterator, one)[0]["loss"])
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        logs, _ = multi_step(iterator, one)
    float(logs["loss"])
    elapsed = time.perf_counter() - start
    return {"steps_per_second": spec["steps"] / elapsed, **memory_mib()}


def memory_mib():
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss it is not inherited
    from the parent across fork and exec) and, at the end, its anonymous (private)
    part (RssAnon: excludes file pages of memory maps, which the kernel can drop)."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "RssAnon"):
                fields[name] = int(value.split()[0]) / 1024.0
    return {"peak_rss_mib": fields["VmHWM"], "anon_rss_mib": fields["RssAnon"]}


def write_dataset(out, n, streamed, chunk=65536):
    """npz:... name of a random MNIST-shaped set with n training images (written once)."""
    import numpy as np

    path = os.path.join(out, f"random_{n}" + (".npy_dir" if streamed else ".npz"))
    if os.path.exists(path):
        return f"npz:{path}"
    rng = np.random.RandomState(0)
    y_train = np.arange(n, dtype=np.int64) % 10
    x_test = rng.randint(0, 256, size=(1000, 28, 28, 1)).astype(np.uint8)
    y_test = np.arange(1000, dtype=np.int64) % 10
    if streamed:
        tmp = path + ".tmp"
        os.makedirs(tmp, exist_ok=True)
        x_train = np.lib.format.open_memmap(os.path.join(tmp, "x_train.npy"), "w+", np.uint8, (n, 28, 28, 1))
        for start in range(0, n, chunk):
            x_train[start:start + chunk] = rng.randint(0, 256, size=(min(chunk, n - start), 28, 28, 1), dtype=np.uint8)
        x_train.flush()
        del x_train
        for key, value in (("y_train", y_train), ("x_test", x_test), ("y_test", y_test)):
            np.save(os.path.join(tmp, key + ".npy"), value)
        os.replace(tmp, path)
    else:
        x_train = rng.randint(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)
        np.savez(path + ".tmp.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        os.replace(path + ".tmp.npz", path)
    return f"npz:{path}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_children(spec, workers=1):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    hosts = [f"127.0.0.1:{free_port()}" for _ in range(workers)]
    processes = []
    for task in range(workers):
        if workers > 1:
            env = dict(env, TF_CONFIG=json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker",
                                                                                       "index": task}}))
        processes.append(subprocess.Popen([sys.executable, __file__, f"--child={json.dumps(spec)}"],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env))
    try:
        outputs = [p.communicate(timeout=1800) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(processes, outputs):
        if p.returncode:
            raise RuntimeError(f"child failed ({p.returncode}): {spec}\n" + err.decode()[-3000:])
    return json.loads(outputs[0][0].decode().strip().splitlines()[-1])


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    if FLAGS.child:
        print(json.dumps(measure(json.loads(FLAGS.child))), flush=True)
        return
    os.makedirs(FLAGS.out, exist_ok=True)
    base = {"steps": FLAGS.steps, "batch": [64, 256], "dataset": write_dataset(FLAGS.out, 60000, True),
            "strategy": "default"}
    print("| setting | steps/s | peak RSS MiB | anon RSS MiB |\n|---|---|---|---|")
    rows = []
    if "strategies" in FLAGS.sections:
        rows += [("1 device (default strategy)", dict(base), 1),
                 ("2 virtual CPU devices (mirrored)", dict(base, devices=2, strategy="mirrored"), 1),
                 ("1 worker process (multi_worker)", dict(base, strategy="multi_worker"), 1),
                 ("2 worker processes (multi_worker)", dict(base, strategy="multi_worker"), 2)]
    if "batches" in FLAGS.sections:
        rows += [(f"batch {b}", dict(base, batch=[int(v) for v in b.split(":")]), 1) for b in FLAGS.batches]
    if "datasets" not in FLAGS.sections:
        FLAGS.dataset_sizes, FLAGS.in_memory_sizes = [], []
    rows += [(f"dataset {int(n):,}, streamed (npz:DIR of .npy)",
              dict(base, dataset=write_dataset(FLAGS.out, int(n), True)), 1) for n in FLAGS.dataset_sizes]
    rows += [(f"dataset {int(n):,}, in memory (.npz)",
              dict(base, dataset=write_dataset(FLAGS.out, int(n), False)), 1) for n in FLAGS.in_memory_sizes]
    for name, spec, workers in rows:
        if spec["strategy"] == "multi_worker" and workers == 1:
            os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{free_port()}"]},
                                                  "task": {"type": "worker", "index": 0}})
        result = run_children(spec, workers)
        os.environ.pop("TF_CONFIG", None)
        print(f"| {name} | {result['steps_per_second']:.2f} | {result['peak_rss_mib']:.0f} | "
              f"{result['anon_rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
