"""Steps/s of VAT on MNIST-shaped data (MLP 1200-600-300-150-150, batch norm) with one and two
virtual CPU devices, one and two worker processes, and over batch and dataset sizes (with the
peak resident memory of each process).  Every measurement runs in a fresh process.

    python benchmarks/scaling.py --steps=20 --batches=32:128,64:256,128:512 \
        --dataset_sizes=10000,60000,240000

Inputs are random uint8 images (28x28x1), labels random: the timing does not depend on them.
"""
import json
import os
import resource
import socket
import subprocess
import sys
import time

from absl import app, flags

flags.DEFINE_integer("steps", 20, "Timed steps (after 3 untimed ones).")
flags.DEFINE_list("batches", ["32:128", "64:256", "128:512"], "labeled:unlabeled global batch sizes.")
flags.DEFINE_list("dataset_sizes", ["10000", "60000", "240000"], "Training-set sizes of the memory sweep.")
flags.DEFINE_string("child", None, "Internal: JSON of one measurement to run in this process.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(spec):
    """Run one measurement in this process; returns steps/s and peak RSS (MiB)."""
    import tensorflow as tf

    if spec.get("devices", 1) > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * spec["devices"])
    import numpy as np

    from tf_advssl import data as data_lib
    from tf_advssl import distribution, training
    from tf_advssl.config import Config

    strategy = distribution.make_strategy(spec["strategy"])
    config = training.validate(Config(method="vat", dataset="mnist", batch_size=spec["batch"][0],
                                      unlabeled_batch_size=spec["batch"][1], train_steps=1000,
                                      strategy=spec["strategy"], mixed_precision=spec.get("precision", "float32")))
    n = spec["dataset_size"]
    rng = np.random.RandomState(0)
    spec_data = data_lib.DataSpec("mnist", (28, 28, 1), 10, "uint8", (0, 255), True)
    x = rng.randint(0, 256, size=(n, 28, 28, 1)).astype(np.uint8)
    y = rng.randint(0, 10, size=n).astype(np.int64)
    data = data_lib.SSLData(spec_data, x, y, x[:100], y[:100], None, None, np.arange(100, dtype=np.int64),
                            data_lib.Preprocessor(scale=1 / 255.0, input_shape=(28, 28, 1)))
    with strategy.scope():
        model = training.build_model(config, spec_data, n)

    def make(num_replicas=1, first_replica=0, num_local_replicas=None):
        return data_lib.train_dataset(data, config.batch_size, config.unlabeled_batch_size, seed=0,
                                      num_replicas=num_replicas, first_replica=first_replica,
                                      num_local_replicas=num_local_replicas)

    iterator = iter(make() if spec["strategy"] == "default" else distribution.distribute_train_dataset(strategy, make))
    model.make_train_function()
    for _ in range(3):
        float(model.train_function(iterator)["loss"])
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        logs = model.train_function(iterator)
    float(logs["loss"])
    elapsed = time.perf_counter() - start
    return {"steps_per_second": spec["steps"] / elapsed,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


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
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env))
    try:
        outputs = [p.communicate(timeout=1800)[0].decode() for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    return json.loads(outputs[0].strip().splitlines()[-1])


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    if FLAGS.child:
        print(json.dumps(measure(json.loads(FLAGS.child))), flush=True)
        return
    base = {"steps": FLAGS.steps, "batch": [64, 256], "dataset_size": 60000, "strategy": "default"}
    print("| setting | steps/s | peak RSS MiB |\n|---|---|---|")
    rows = [("1 device (default strategy)", dict(base), 1),
            ("2 virtual CPU devices (mirrored)", dict(base, devices=2, strategy="mirrored"), 1),
            ("1 worker process (multi_worker)", dict(base, strategy="multi_worker"), 1),
            ("2 worker processes (multi_worker)", dict(base, strategy="multi_worker"), 2)]
    rows += [(f"batch {b}", dict(base, batch=[int(v) for v in b.split(":")]), 1) for b in FLAGS.batches]
    rows += [(f"dataset {n}", dict(base, dataset_size=int(n)), 1) for n in FLAGS.dataset_sizes]
    for name, spec, workers in rows:
        if spec["strategy"] == "multi_worker" and workers == 1:
            os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{free_port()}"]},
                                                  "task": {"type": "worker", "index": 0}})
        result = run_children(spec, workers)
        os.environ.pop("TF_CONFIG", None)
        print(f"| {name} | {result['steps_per_second']:.2f} | {result['peak_rss_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
