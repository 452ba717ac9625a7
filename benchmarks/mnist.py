"""MNIST with 100 labels: test error, wall time and steps/s per method.

    python benchmarks/mnist.py --methods=vat,supervised --seeds=1 \
        --tfds_manual_dir=../shared/datasets/mnist --data_dir=/tmp/tfds

Extra per-method settings: --rows=vat:vat_eps=2.0:train_steps=12000 (same syntax
as benchmarks/two_circles.py); --methods adds rows with the defaults.
Running the same command again skips the finished runs and resumes an interrupted one.
"""
import dataclasses
import json
import os

import numpy as np
from absl import app, flags

from rows import parse_row

flags.DEFINE_list("methods", ["vat", "supervised"], "Methods with default settings.")
flags.DEFINE_list("rows", [], "METHOD[:flag=value...] rows.")
flags.DEFINE_integer("seeds", 1, "Seeds per row.")
flags.DEFINE_integer("num_labeled", 100, "Labeled examples.")
flags.DEFINE_string("dataset", "mnist", "tfds name.")
flags.DEFINE_string("data_dir", None, "tfds data directory.")
flags.DEFINE_string("tfds_manual_dir", "../shared/datasets/mnist", "Original archives.")
flags.DEFINE_string("out", "/tmp/tf_advssl_bench/mnist", "Run directories and results.")


def main(argv):
    del argv
    from tf_advssl import training
    from tf_advssl.config import Config

    fields = {f.name for f in dataclasses.fields(Config)}
    rows = list(flags.FLAGS.methods) + list(flags.FLAGS.rows)
    results = []
    for row in rows:
        method, values = parse_row(row)
        runs = []
        for seed in range(flags.FLAGS.seeds):
            workdir = os.path.join(flags.FLAGS.out, row.replace(":", "_").replace("=", ""), f"seed{seed}")
            config = Config(method=method, dataset=flags.FLAGS.dataset, num_labeled=flags.FLAGS.num_labeled,
                            seed=seed, split_seed=seed, workdir=workdir, verbose=0, export=False,
                            data_dir=flags.FLAGS.data_dir,
                            tfds_manual_dir=flags.FLAGS.tfds_manual_dir,
                            **{k: v for k, v in values.items() if k in fields},
                            method_params={k: v for k, v in values.items() if k not in fields})
            runs.append(training.run(config))
        errors = [m["test_error"] for m in runs]
        result = dict(row=row, mean=float(np.mean(errors)), std=float(np.std(errors)), errors=errors,
                      wall_time_s=float(np.mean([m["wall_time_s"] for m in runs])),
                      steps_per_second=float(np.mean([m["steps_per_second"] for m in runs])),
                      train_steps=runs[0]["train_steps"])
        results.append(result)
        print(f"{row}: test error {result['mean']:.2f} ± {result['std']:.2f} % ({result['train_steps']} steps, "
              f"{result['wall_time_s']:.0f} s, {result['steps_per_second']:.1f} steps/s)", flush=True)
    os.makedirs(flags.FLAGS.out, exist_ok=True)
    with open(os.path.join(flags.FLAGS.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
