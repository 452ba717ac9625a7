"""Two Circles protocol of Ma et al. (WISE 2019): 8 labeled, 1500 unlabeled points,
MLP 2-100-50-2, noise 0.01 and 0.06, several seeds; test error mean and std per row.

    python benchmarks/two_circles.py --rows=vat:vat_eps=0.1,vat:vat_eps=1.0,supervised \
        --noises=0.01,0.06 --factors=0.8,0.5 --seeds=10 --out=/tmp/two_circles

--factors are the rings' radius ratios (--circles_factor; sklearn's default 0.8, at which
noise 0.06 makes the rings overlap).

Each row is METHOD[:flag=value[:flag=value...]]; flags are Config fields or method
parameters. Seed k uses --seed=k and --split_seed=k (data, labeled points, init).
Running the same command again skips the finished runs and resumes an interrupted
one from its checkpoint (a run directory holding another config is refused).
"""
import dataclasses
import json
import os

import numpy as np
from absl import app, flags

from rows import parse_row

flags.DEFINE_list("rows", ["vat:vat_eps=0.1", "vat:vat_eps=1.0", "supervised"], "Rows to run.")
flags.DEFINE_list("noises", ["0.01", "0.06"], "Noise levels.")
flags.DEFINE_list("factors", ["0.8"], "Radius ratios of the rings (--circles_factor).")
flags.DEFINE_integer("seeds", 10, "Seeds per cell.")
flags.DEFINE_string("out", "/tmp/tf_advssl_bench/two_circles", "Directory for runs and results.")
flags.DEFINE_list("common", [], "flag=value settings applied to every row.")


def main(argv):
    del argv
    from tf_advssl import training
    from tf_advssl.config import Config

    config_fields = {f.name for f in dataclasses.fields(Config)}
    results = []
    for row in flags.FLAGS.rows:
        method, values = parse_row(row, flags.FLAGS.common)
        for factor in map(float, flags.FLAGS.factors):
            for noise in map(float, flags.FLAGS.noises):
                errors, times = [], []
                for seed in range(flags.FLAGS.seeds):
                    cell = f"noise{noise}" if factor == 0.8 else f"factor{factor}_noise{noise}"
                    workdir = os.path.join(flags.FLAGS.out, row.replace(":", "_").replace("=", ""), cell,
                                           f"seed{seed}")
                    base = {k: v for k, v in values.items() if k in config_fields}
                    config = Config(method=method, dataset="two_circles", noise=noise, circles_factor=factor,
                                    seed=seed, split_seed=seed, workdir=workdir, verbose=0, export=False, **base,
                                    method_params={k: v for k, v in values.items() if k not in config_fields})
                    metrics = training.run(config)
                    errors.append(metrics["test_error"])
                    times.append(metrics["wall_time_s"])
                results.append(dict(row=row, factor=factor, noise=noise, mean=float(np.mean(errors)),
                                    std=float(np.std(errors)), errors=errors, mean_wall_time_s=float(np.mean(times))))
                print(f"{row:40s} factor {factor:.2f} noise {noise:.2f}: {np.mean(errors):6.2f} ± "
                      f"{np.std(errors):5.2f} %  (per seed: {', '.join(f'{e:.1f}' for e in errors)}; "
                      f"{np.mean(times):.0f} s/run)", flush=True)
    os.makedirs(flags.FLAGS.out, exist_ok=True)
    with open(os.path.join(flags.FLAGS.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("\n| row | factor | noise | test error % (mean ± std) | per seed |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['row']} | {r['factor']} | {r['noise']} | {r['mean']:.2f} ± {r['std']:.2f} | "
              f"{', '.join(f'{e:.1f}' for e in r['errors'])} |")


if __name__ == "__main__":
    app.run(main)
