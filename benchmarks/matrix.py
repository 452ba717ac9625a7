"""The cross-data-set benchmark: data set x method x seed, supervised as the reference row.

    python benchmarks/matrix.py                                   # the whole matrix, 3 trainings at once
    python benchmarks/matrix.py --datasets=digits,moons --methods=supervised,vat,mixmatch
    python benchmarks/matrix.py --dry_run                          # the commands and what they cost
    python benchmarks/matrix.py --validation_size=300 --datasets=digits \
        --rows=mixmatch:mixmatch_rampup=0.4 --output=docs/benchmarks/selection_digits.md

Every method of a data set gets the same network, steps and augmentation (BUDGETS), and
otherwise its defaults; seed k is ``--seed=k --split_seed=k``.  ``scar`` is a row of its own:
SCAR on top of the finished ``vat`` run of the same seed, for BUDGETS' steps again.  Runs are
``bin/train.py`` processes with their own run directory under --runs_dir, so running the same
command again reuses the finished runs and resumes interrupted ones; --parallel runs at once.
Each finished run's config.json and metrics.json are copied under --results_dir
(docs/benchmarks/runs, committed), so the matrix also resumes on another machine.
The markdown table (mean ± std over seeds, the per-seed numbers, the change relative to
supervised) goes to --output with the command, the machine and the CPU time it took.
With --validation_size > 0 the runs hold out a validation split and the table reports the
validation error: the mode for choosing a default (the test error is never used for that).
"""
import concurrent.futures
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from rows import parse_row, run_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# Per data set: the flags every method runs with (network, steps, augmentation, labels).
BUDGETS = {
    "mnist": dict(num_labeled=100, network="mlp", train_steps=6000, augment_translate=2, eval_every=1000),
    "digits": dict(num_labeled=50, network="lenet", train_steps=3000, augment_translate=2, eval_every=500),
    "two_circles": dict(num_labeled=8, network="mlp", train_steps=10000, eval_every=2000),
    "moons": dict(num_labeled=8, network="mlp", train_steps=10000, eval_every=2000),
}
REFERENCE = "supervised"

flags.DEFINE_list("datasets", list(BUDGETS), "Data sets (keys of BUDGETS).")
flags.DEFINE_list("methods", None, "Rows with the defaults (default: every registered method, scar on vat).")
flags.DEFINE_list("rows", [], "Further rows METHOD[:flag=value...], e.g. vat:vat_eps=0.1.")
flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds (seed k: --seed=k --split_seed=k).")
flags.DEFINE_list("common", [], "flag=value settings for every row, over BUDGETS (e.g. noise=0.06,circles_factor=0.5); "
                                "give them a --tag.")
flags.DEFINE_string("tag", "", "Name of this variant of the budgets: its runs go to DATASET_TAG/ (needed with --common).")
flags.DEFINE_integer("parallel", 3, "Trainings at once.")
flags.DEFINE_integer("validation_size", 0, "> 0: hold out a validation split and report its error.")
flags.DEFINE_string("runs_dir", "/tmp/tf_advssl_matrix", "Run directories (reused when run again).")
flags.DEFINE_string("results_dir", os.path.join(ROOT, "docs", "benchmarks", "runs"),
                    "Where each finished run's config.json and metrics.json are copied (committed: a run "
                    "found there is finished, on this machine or another).")
flags.DEFINE_string("output", None, "Markdown table (default docs/benchmarks/matrix.md, or "
                                    "docs/benchmarks/matrix_validation.md with --validation_size).")
flags.DEFINE_string("data_dir", "/tmp/tfds", "tfds data directory (mnist).")
flags.DEFINE_string("tfds_manual_dir", os.path.normpath(os.path.join(ROOT, "..", "shared", "datasets", "mnist")),
                    "Original MNIST archives.")
flags.DEFINE_bool("dry_run", False, "Print the commands and the cost of the finished runs; train nothing.")


def all_methods():
    from tf_advssl import methods
    return sorted(methods.METHODS)


def workdir_of(dataset, row, seed):
    return os.path.join(flags.FLAGS.runs_dir,
                        run_path(dataset, row, seed, flags.FLAGS.tag, flags.FLAGS.validation_size))


def budget_of(dataset):
    """The flags of every row on ``dataset``: BUDGETS, then --common."""
    settings = dict(BUDGETS[dataset])
    settings.update(parse_row("-:" + ":".join(flags.FLAGS.common))[1] if flags.FLAGS.common else {})
    return settings


def command(dataset, row, seed):
    method, values = parse_row(row)
    settings = budget_of(dataset)
    settings.update(values)
    args = [sys.executable, os.path.join(ROOT, "bin", "train.py"), f"--method={method}", f"--dataset={dataset}",
            f"--seed={seed}", f"--split_seed={seed}", f"--workdir={workdir_of(dataset, row, seed)}",
            "--verbose=0", "--export=false"]
    if method == "scar":
        settings.setdefault("scar_base", "vat")
        settings.setdefault("pretrained_workdir", workdir_of(dataset, settings["scar_base"], seed))
    if flags.FLAGS.validation_size:
        settings["validation_size"] = flags.FLAGS.validation_size
    if dataset == "mnist":
        settings.update(data_dir=flags.FLAGS.data_dir, tfds_manual_dir=flags.FLAGS.tfds_manual_dir)
    for key, value in settings.items():
        if isinstance(value, bool):
            args.append(f"--{key}" if value else f"--no{key}")
        else:
            args.append(f"--{key}={value}")
    return args


def result_dir_of(dataset, row, seed):
    return os.path.join(flags.FLAGS.results_dir, os.path.relpath(workdir_of(dataset, row, seed),
                                                                 flags.FLAGS.runs_dir))


# Kept under --results_dir for every finished run, and when the run wrote them (SCAR's Table 2).
KEPT_FILES = ("config.json", "metrics.json")
KEPT_IF_WRITTEN = ("scar_table.json", "scar_table.md")


def metrics_of(dataset, row, seed):
    """The metrics of a finished run: from --results_dir, else from its run directory (then
    copied, with its config and KEPT_IF_WRITTEN, into --results_dir)."""
    kept_dir = result_dir_of(dataset, row, seed)
    workdir = workdir_of(dataset, row, seed)
    if os.path.exists(os.path.join(workdir, "metrics.json")):
        os.makedirs(kept_dir, exist_ok=True)
        for name in KEPT_FILES + KEPT_IF_WRITTEN:
            source, target = os.path.join(workdir, name), os.path.join(kept_dir, name)
            if os.path.exists(source) and not os.path.exists(target):
                shutil.copyfile(source, target)
    kept = os.path.join(kept_dir, "metrics.json")
    if not os.path.exists(kept):
        return None
    with open(kept) as f:
        return json.load(f)


def train(args, log_path):
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    print("start:", shlex.join(args[1:]), flush=True)
    tick = time.time()
    with open(log_path, "a") as log:
        code = subprocess.call(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return code, time.time() - tick


def run_all(jobs):
    """Run (dataset, row, seed) jobs, --parallel at once; a scar job waits for its vat run."""
    pending = [job for job in jobs if metrics_of(*job) is None]
    first = [job for job in pending if not job[1].startswith("scar")]
    second = [job for job in pending if job[1].startswith("scar")]
    for wave in (first, second):
        with concurrent.futures.ThreadPoolExecutor(flags.FLAGS.parallel) as pool:
            futures = {}
            for job in wave:
                futures[pool.submit(train, command(*job), workdir_of(*job) + ".log")] = job
            for future in concurrent.futures.as_completed(futures):
                job = futures[future]
                code, seconds = future.result()
                metrics = metrics_of(*job)
                kind = "validation" if flags.FLAGS.validation_size else "test"
                status = f"{kind} error {error_of(metrics):.2f} %" if metrics else f"exit code {code}, see {workdir_of(*job)}.log"
                print(f"done ({seconds:.0f} s): {job[0]} {job[1]} seed {job[2]}: {status}", flush=True)


def error_of(metrics):
    return metrics["val_error"] if flags.FLAGS.validation_size else metrics["test_error"]


def table(dataset, rows, seeds):
    kind = "validation" if flags.FLAGS.validation_size else "test"
    reference = [metrics_of(dataset, REFERENCE, s) for s in seeds]
    reference_mean = (np.mean([error_of(m) for m in reference]) if reference and all(reference) else None)
    budget = " ".join(f"--{k}={v}" for k, v in budget_of(dataset).items())
    lines = [f"### {dataset}", "", f"Every row: `{budget}`; {kind} error %, seeds {', '.join(seeds)}.", "",
             f"| method | {kind} error % (mean ± std) | per seed | vs {REFERENCE} | wall s per run |",
             "|---|---|---|---|---|"]
    for row in rows:
        runs = [metrics_of(dataset, row, s) for s in seeds]
        done = [m for m in runs if m is not None]
        per_seed = ", ".join(f"{error_of(m):.2f}" if m else "–" for m in runs)
        if not done:
            lines.append(f"| `{row}` | not run | {per_seed} | | |")
            continue
        errors = [error_of(m) for m in done]
        mean, std = float(np.mean(errors)), float(np.std(errors))
        versus = ""
        if reference_mean is not None and row != REFERENCE:
            change = 100.0 * (mean - reference_mean) / max(reference_mean, 1e-9)
            versus = f"{change:+.0f} %" + (" **worse**" if mean > reference_mean else "")
        partial = "" if len(done) == len(runs) else f" ({len(done)} of {len(runs)} seeds)"
        wall = np.mean([m.get("wall_time_s", 0.0) for m in done])
        lines.append(f"| `{row}` | {mean:.2f} ± {std:.2f}{partial} | {per_seed} | {versus} | {wall:.0f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    methods = flags.FLAGS.methods if flags.FLAGS.methods is not None else all_methods()
    rows = list(dict.fromkeys([REFERENCE] + list(methods) + list(flags.FLAGS.rows)))  # in order, once each
    if any(r.startswith("scar") for r in rows) and "vat" not in rows:
        rows.insert(1, "vat")
    seeds = list(flags.FLAGS.seeds)
    if flags.FLAGS.common and not flags.FLAGS.tag:
        raise app.UsageError("--common changes the budgets: name the variant with --tag (its runs go elsewhere)")
    for dataset in flags.FLAGS.datasets:
        if dataset not in BUDGETS:
            raise app.UsageError(f"--datasets: {dataset!r} is not one of {', '.join(BUDGETS)}")
    jobs = [(d, r, s) for d in flags.FLAGS.datasets for r in rows for s in seeds]
    started = time.time()
    if flags.FLAGS.dry_run:
        for job in jobs:
            print(("done  " if metrics_of(*job) else "to run ") + shlex.join(command(*job)[1:]))
    else:
        run_all(jobs)
    finished = [m for m in (metrics_of(*job) for job in jobs) if m]
    run_seconds = sum(m.get("wall_time_s", 0.0) for m in finished)
    cost = (f"{len(finished)} of {len(jobs)} runs finished; their wall times add up to {run_seconds / 3600:.1f} h "
            f"({run_seconds / max(len(finished), 1):.0f} s per run, {flags.FLAGS.parallel} at once); "
            f"this invocation took {(time.time() - started) / 3600:.2f} h.")
    print(cost)
    output = flags.FLAGS.output or os.path.join(
        ROOT, "docs", "benchmarks", "matrix_validation.md" if flags.FLAGS.validation_size else "matrix.md")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    text = [f"# {'Validation' if flags.FLAGS.validation_size else 'Test'} error per data set and method", "",
            "Generated by `python benchmarks/matrix.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]) + "` on "
            f"{datetime.date.today().isoformat()} ({machine}). {cost}", ""]
    for dataset in flags.FLAGS.datasets:
        text += [table(dataset, rows, seeds), ""]
    with open(output, "w") as f:
        f.write("\n".join(text))
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
