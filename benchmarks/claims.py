"""The claims of the five papers in ../shared/seeds, one row each, measured by matrix.py runs:
writes docs/claims.md (claim, the paper's numbers, ours as mean ± std over seeds, the command,
and the verdict).

    python benchmarks/claims.py --claims=wise_circles_f05 --parallel=3    # runs what is missing, then writes
    python benchmarks/claims.py --report_only                             # only writes, from finished runs

Each claim names its experiments: a data set of matrix.py's BUDGETS, settings for every row over
that budget (--common, under a --tag of their own), the compared rows and the seeds. The rows
of a claim share data, network, steps and augmentation. Runs are matrix.py's: they resume, and
their config.json and metrics.json are kept under docs/benchmarks/runs, so the verdicts can be
recomputed anywhere. A verdict compares means over seeds; "within the spread" marks one whose
deciding difference is smaller than the larger std of the rows it compares.
"""
import dataclasses
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys

import numpy as np
from absl import app, flags

from rows import run_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_list("claims", [], "Claims (ids) whose missing runs to train first (default: none).")
flags.DEFINE_bool("report_only", False, "Train nothing; write the document from the finished runs.")
flags.DEFINE_integer("parallel", 3, "Trainings at once.")
flags.DEFINE_string("runs_dir", "/tmp/tf_advssl_matrix", "matrix.py's --runs_dir.")
flags.DEFINE_string("results_dir", os.path.join(ROOT, "docs", "benchmarks", "runs"), "matrix.py's --results_dir.")
flags.DEFINE_string("output", os.path.join(ROOT, "docs", "claims.md"), "The claims document.")


@dataclasses.dataclass(frozen=True)
class Experiment:
    dataset: str
    rows: tuple
    seeds: tuple = ("1", "2", "3")
    common: tuple = ()   # flag=value settings over matrix.py's budget for the data set
    tag: str = ""        # required with common

    def matrix_args(self):
        args = [f"--datasets={self.dataset}", "--methods=", f"--rows={','.join(self.rows)}",
                f"--seeds={','.join(self.seeds)}"]
        if self.common:
            args += [f"--common={','.join(self.common)}", f"--tag={self.tag}"]
        return args

    def errors(self, row):
        """Test errors of the finished seeds of ``row`` (None for a seed not finished)."""
        found = []
        for seed in self.seeds:
            path = os.path.join(flags.FLAGS.results_dir, run_path(self.dataset, row, seed, self.tag), "metrics.json")
            if os.path.exists(path):
                with open(path) as f:
                    found.append(json.load(f)["test_error"])
            else:
                found.append(None)
        return found


def below(*rows):
    """Held when the rows' mean errors increase in the order given (each below the next)."""
    def verdict(means, stds):
        for a, b in zip(rows, rows[1:]):
            if not means[a] < means[b]:
                return f"not held: {a} {means[a]:.2f} is not below {b} {means[b]:.2f}"
        closest = min(zip(rows, rows[1:]), key=lambda pair: means[pair[1]] - means[pair[0]])
        gap = means[closest[1]] - means[closest[0]]
        spread = max(stds[closest[0]], stds[closest[1]])
        return "held" + (f", within the spread ({closest[0]} vs {closest[1]}: {gap:.2f} points, "
                         f"std {spread:.2f})" if gap < spread else "")
    return verdict


def at_most(row, others):
    """Held when ``row``'s mean error is at most each of ``others``'."""
    def verdict(means, stds):
        worse = [o for o in others if means[row] > means[o]]
        if worse:
            return "not held: " + "; ".join(f"{row} {means[row]:.2f} above {o} {means[o]:.2f}" for o in worse)
        return "held"
    return verdict


def within(row, other, points):
    """Held when ``row``'s mean error is at most ``points`` above ``other``'s."""
    def verdict(means, stds):
        gap = means[row] - means[other]
        return ("held" if gap <= points else "not held") + f": {row} {gap:+.2f} points from {other}"
    return verdict


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    sentence: str
    paper_numbers: str
    experiment: Experiment
    verdict: object  # (means, stds) -> str, for the rows of the experiment


def wise_circles(factor, noise, seeds=tuple(str(s) for s in range(10))):
    rows = ("vat:vat_eps=0.1", "vat:vat_eps=1.0", "advgen:advgen_lambda=1.0")
    tag = f"f{str(factor).replace('.', '')}_n{str(noise).replace('.', '')}"
    return Experiment("two_circles", rows, seeds, (f"noise={noise}", f"circles_factor={factor}"), tag)


WISE_PAPER = {0.01: "VAT ε 0.1: 0.00 ± 0.00; VAT ε 1.0: 4.59 ± 5.64; generator λ 1.0: 0.00 ± 0.00 (10 seeds)",
              0.06: "VAT ε 0.1: 24.61 ± 4.58; VAT ε 1.0: 5.10 ± 4.28; generator λ 1.0: 4.75 ± 5.31 (10 seeds)"}

CLAIMS = [
    Claim(f"wise_circles_f{str(f).replace('.', '')}_n{str(n).replace('.', '')}", "001 (WISE 2019)",
          f"On Two Circles (8 labels, radius ratio {f}, noise {n}) the generator (λ 1) is at most as wrong as VAT "
          f"at either radius (ε 0.1, 1.0): robust to its hyper-parameter where VAT is not.",
          WISE_PAPER[n] + ("" if f == 0.8 else "; the paper's radius ratio is not stated"), wise_circles(f, n),
          at_most("advgen:advgen_lambda=1.0", ("vat:vat_eps=0.1", "vat:vat_eps=1.0")))
    for f in (0.8, 0.5) for n in (0.01, 0.06)
] + [
    Claim("advmixup_circles", "000 (AdvMixup)",
          "On Two Circles AdvMixup separates the classes where VAT and ICT fail: its error is below both.",
          "a figure only (decision boundaries), no numbers",
          Experiment("two_circles", ("advmixup", "vat", "ict"), tuple(str(s) for s in range(10))),
          at_most("advmixup", ("vat", "ict"))),
    Claim("advmixup_digits", "000 (AdvMixup)",
          "At the same budget AdvMixup's error is below ICT's, ICT's below VAT's and VAT's below supervised "
          "training's (here on the 8x8 digits, 50 labels).",
          "CIFAR-10, 4000 labels: AdvMixup 7.13, ICT 7.29, VAT 11.36, supervised 21.75 (1000 labels: 9.67, 15.48, –, 39.95)",
          Experiment("digits", ("advmixup", "ict", "vat", "supervised")),
          below("advmixup", "ict", "vat", "supervised")),
    Claim("survey_vat_at_digits", "003 (survey)",
          "VAT is below adversarial training, which is below supervised training (here on the 8x8 digits).",
          "MNIST-100 (VAT paper, in the survey): VAT 2.33, plain network 21.98; adversarial training is not in the MNIST-100 table",
          Experiment("digits", ("vat", "at", "supervised")), below("vat", "at", "supervised")),
    Claim("xvat_vs_vat_digits", "004 (xAT/xVAT)",
          "xVAT's error is within 0.5 points of VAT's at the same budget (here on the 8x8 digits).",
          "MNIST-100 (accuracies of the paper, as errors): VAT 1.36, xVAT transductive 1.98, inductive 2.18",
          Experiment("digits", ("xvat", "vat", "supervised")), within("xvat", "vat", 0.5)),
]


def mean_std(errors):
    done = [e for e in errors if e is not None]
    return (float(np.mean(done)), float(np.std(done)), len(done)) if done else (None, None, 0)


def render(claim):
    experiment = claim.experiment
    command = "python benchmarks/matrix.py " + " ".join(shlex.quote(a) for a in experiment.matrix_args())
    cells, means, stds, complete = [], {}, {}, True
    for row in experiment.rows:
        errors = experiment.errors(row)
        mean, std, count = mean_std(errors)
        complete &= count == len(errors)
        if mean is None:
            cells.append(f"`{row}`: not run")
            continue
        means[row], stds[row] = mean, std
        partial = "" if count == len(errors) else f", {count} of {len(errors)} seeds"
        cells.append(f"`{row}`: {mean:.2f} ± {std:.2f}{partial}")
    if not complete:
        verdict = "not measured yet" + (" (partial)" if means else "")
    else:
        verdict = claim.verdict(means, stds)
    budget = f"`{experiment.dataset}` budget of matrix.py" + (
        f" with `{' '.join('--' + c for c in experiment.common)}`" if experiment.common else "")
    return (f"| {claim.id} | {claim.paper} | {claim.sentence} | {claim.paper_numbers} | "
            f"{'; '.join(cells)} ({len(experiment.seeds)} seeds, {budget}) | `{command}` | **{verdict}** |")


def main(argv):
    del argv
    by_id = {claim.id: claim for claim in CLAIMS}
    unknown = [c for c in flags.FLAGS.claims if c not in by_id]
    if unknown:
        raise app.UsageError(f"--claims: unknown {unknown}; known: {', '.join(by_id)}")
    if not flags.FLAGS.report_only:
        for claim_id in flags.FLAGS.claims:
            args = [sys.executable, os.path.join(ROOT, "benchmarks", "matrix.py"),
                    *by_id[claim_id].experiment.matrix_args(), f"--parallel={flags.FLAGS.parallel}",
                    f"--runs_dir={flags.FLAGS.runs_dir}", f"--results_dir={flags.FLAGS.results_dir}",
                    f"--output={os.path.join(ROOT, 'docs', 'benchmarks', 'claims', claim_id + '.md')}"]
            print("claim", claim_id, ":", shlex.join(args[1:]), flush=True)
            subprocess.check_call(args, cwd=os.path.join(ROOT, "benchmarks"))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = ["# The papers' claims, measured here", "",
             f"Generated by `python benchmarks/claims.py --report_only` on {datetime.date.today().isoformat()} "
             f"({machine}) from the runs kept under `docs/benchmarks/runs`. Test error % as mean ± std over "
             "seeds (seed k: `--seed=k --split_seed=k`); every row of a claim has the same data, network, steps "
             "and augmentation. Each experiment's full table, with per-seed errors and supervised training as "
             "reference, is in `docs/benchmarks/claims/<claim>.md`.", "",
             "| claim | paper | claim in one sentence | paper's numbers | ours | command | verdict |",
             "|---|---|---|---|---|---|---|"]
    lines += [render(claim) for claim in CLAIMS]
    with open(flags.FLAGS.output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", flags.FLAGS.output)


if __name__ == "__main__":
    app.run(main)
