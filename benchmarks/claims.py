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

The claims about robustness and interpolation paths (MEASURED_CLAIMS) train the same way, then
measure the finished runs with bin/evaluate.py or bin/plot.py (claim_measures.py). Run from a
snapshot worktree, pass --docs_dir=<checkout>/docs so that everything lands in the checkout.
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

import claim_measures
from rows import run_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_list("claims", [], "Claims (ids) whose missing runs to train first (default: none).")
flags.DEFINE_bool("report_only", False, "Train nothing; write the document from the finished runs.")
flags.DEFINE_integer("parallel", 3, "Trainings at once.")
flags.DEFINE_string("runs_dir", "/tmp/tf_advssl_matrix", "matrix.py's --runs_dir.")
flags.DEFINE_string("docs_dir", os.path.join(ROOT, "docs"),
                    "Where the document (claims.md), the per-claim tables (benchmarks/claims/), the kept runs "
                    "(benchmarks/runs/) and the figures (figures/) go: the checkout's docs when run from a snapshot.")


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
            path = os.path.join(results_dir(), run_path(self.dataset, row, seed, self.tag), "metrics.json")
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


def pairs_at_most(pairs):
    """Held when in each (row, reference) pair the row's mean error is at most the reference's."""
    def verdict(means, stds):
        worse = [f"{a} {means[a]:.2f} above {b} {means[b]:.2f}" for a, b in pairs if means[a] > means[b]]
        if worse:
            return f"not held for {len(worse)} of {len(pairs)}: " + "; ".join(worse)
        gaps = [f"{a} {means[a] - means[b]:+.2f}" for a, b in pairs]
        return "held (" + ", ".join(gaps) + " points)"
    return verdict


def near(row, value, points):
    """Held when ``row``'s mean error is at most ``points`` above the paper's ``value``."""
    def verdict(means, stds):
        gap = means[row] - value
        return ("held" if gap <= points else "not held") + f": {row} {gap:+.2f} points from the paper's {value}"
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

# MNIST claims run on matrix.py's MNIST budget (the MLP, 2-pixel translations, 6000 steps), the
# runs of the cross-data-set matrix. The convolutional lenet reaches lower errors (xVAT+EntMin
# 0.84 %, README) but costs about four times the CPU time per step: about 12 CPU hours for the
# 21 runs of the MNIST claims, against 3 on the MLP.
def mnist(rows, labels=100, seeds=("1", "2", "3")):
    if labels == 100:
        return Experiment("mnist", rows, seeds)
    return Experiment("mnist", rows, seeds, (f"num_labeled={labels}",), f"l{labels}")


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
    Claim("advmixup_mnist", "000 (AdvMixup)",
          "At the same budget AdvMixup's error is below ICT's, ICT's below VAT's and VAT's below supervised "
          "training's (MNIST, 100 labels).",
          "CIFAR-10, 4000 labels: AdvMixup 7.13, ICT 7.29, VAT 11.36, supervised 21.75 (1000 labels: 9.67, 15.48, –, 39.95)",
          mnist(("advmixup", "ict", "vat", "supervised")), below("advmixup", "ict", "vat", "supervised")),
    Claim("advmixup_digits", "000 (AdvMixup)",
          "At the same budget AdvMixup's error is below ICT's, ICT's below VAT's and VAT's below supervised "
          "training's (here on the 8x8 digits, 50 labels).",
          "CIFAR-10, 4000 labels: AdvMixup 7.13, ICT 7.29, VAT 11.36, supervised 21.75 (1000 labels: 9.67, 15.48, –, 39.95)",
          Experiment("digits", ("advmixup", "ict", "vat", "supervised")),
          below("advmixup", "ict", "vat", "supervised")),
    Claim("wise_mnist1000", "001 (WISE 2019)",
          "With 1000 MNIST labels the generator's error is at most VAT's.",
          "generator 1.17 ± 0.10, VAT 1.27 ± 0.11",
          mnist(("advgen", "vat", "supervised"), labels=1000), at_most("advgen", ("vat",))),
    Claim("survey_vat_at_mnist", "003 (survey)",
          "VAT is below adversarial training, which is below supervised training (MNIST, 100 labels).",
          "MNIST-100 (VAT paper, in the survey): VAT 2.33, plain network 21.98",
          mnist(("vat", "at", "supervised")), below("vat", "at", "supervised")),
    Claim("survey_aae_mnist", "003 (survey)",
          "The semi-supervised adversarial autoencoder reaches its paper's MNIST-100 error (within 0.5 points).",
          "1.90 ± 0.10", mnist(("aae", "supervised")), near("aae", 1.90, 0.5)),
    Claim("survey_fm_gan_mnist", "003 (survey)",
          "The feature-matching GAN reaches its paper's MNIST-100 error (within 0.5 points), with its paper's "
          "discriminator (mlp_wn) and no augmentation.",
          "0.93 ± 0.07 (Salimans et al.)",
          Experiment("mnist", ("fm_gan:network=mlp_wn", "supervised"), ("1", "2", "3"),
                     ("augment_translate=0", "train_steps=20000", "eval_every=4000"), "fmgan20000"),
          near("fm_gan:network=mlp_wn", 0.93, 0.5)),
    Claim("xvat_vs_vat_mnist", "004 (xAT/xVAT)",
          "xVAT's error is within 0.5 points of VAT's at the same budget (MNIST, 100 labels).",
          "MNIST-100 (accuracies of the paper, as errors): VAT 1.36, xVAT transductive 1.98, inductive 2.18",
          mnist(("xvat", "vat", "supervised")), within("xvat", "vat", 0.5)),
    Claim("scar_digits", "002 (SCAR)",
          "SCAR on a trained VAT, MixMatch or FixMatch model (3000 + 3000 steps) ends below the same base trained "
          "for the same 6000 steps (8x8 digits).",
          "CIFAR-10 (accuracy as error %): VAT 14.75 → 13.21 with SCAR, MixMatch 10.01 → 7.01, FixMatch 5.87 → 4.83; "
          "the paper does not train the bases longer",
          Experiment("digits", ("scar", "vat:train_steps=6000", "scar:scar_base=mixmatch", "mixmatch:train_steps=6000",
                                "scar:scar_base=fixmatch", "fixmatch:train_steps=6000")),
          pairs_at_most((("scar", "vat:train_steps=6000"), ("scar:scar_base=mixmatch", "mixmatch:train_steps=6000"),
                         ("scar:scar_base=fixmatch", "fixmatch:train_steps=6000")))),
    Claim("survey_vat_at_digits", "003 (survey)",
          "VAT is below adversarial training, which is below supervised training (here on the 8x8 digits).",
          "MNIST-100 (VAT paper, in the survey): VAT 2.33, plain network 21.98; adversarial training is not in the MNIST-100 table",
          Experiment("digits", ("vat", "at", "supervised")), below("vat", "at", "supervised")),
    Claim("xvat_vs_vat_digits", "004 (xAT/xVAT)",
          "xVAT's error is within 0.5 points of VAT's at the same budget (here on the 8x8 digits).",
          "MNIST-100 (accuracies of the paper, as errors): VAT 1.36, xVAT transductive 1.98, inductive 2.18",
          Experiment("digits", ("xvat", "vat", "supervised")), within("xvat", "vat", 0.5)),
    Claim("xat_vs_at_digits", "004 (xAT/xVAT)",
          "In training on labels alone xAT is about as accurate as adversarial training: within 0.5 points "
          "(here on the 8x8 digits, 50 labels).",
          "CIFAR-10, all labels: AT 6.10, xAT 6.30 (accuracies 93.90, 93.70 as errors)",
          Experiment("digits", ("xat", "at", "supervised")), within("xat", "at", 0.5)),
    Claim("xat_vs_at_mnist", "004 (xAT/xVAT)",
          "In training on labels alone xAT is about as accurate as adversarial training: within 0.5 points "
          "(MNIST, 100 labels).",
          "CIFAR-10, all labels: AT 6.10, xAT 6.30 (accuracies 93.90, 93.70 as errors)",
          mnist(("xat", "at", "supervised")), within("xat", "at", 0.5)),
]


@dataclasses.dataclass(frozen=True)
class MeasuredClaim:
    """A claim about trained runs other than their test error (claim_measures)."""
    id: str
    paper: str
    sentence: str
    paper_numbers: str
    measure: object   # claim_measures.Attacked or claim_measures.Paths
    verdict: object   # (measure, means) -> str


ADVMIXUP_FGM_PAPER = ("CIFAR-10 white-box at ε 1/2/3/5/8: supervised 58.50/77.73/86.73/94.2/96.91, ICT "
                      "24.77/43.28/56.24/69.42/78.38, AdvMixup 17.40/30.91/42.52/58.59/70.82; black-box: supervised "
                      "29.25/…/75.75, ICT 9.78/…/37.83, AdvMixup 8.62/…/25.77 (SVHN alike)")
ADVMIXUP_FGM_SENTENCE = ("Under FGM (L2) attacks AdvMixup's error is below ICT's and ICT's below supervised "
                         "training's at every radius of a sweep, white-box and black-box (transferred from a "
                         "separately trained supervised substitute).")
PATHS_SENTENCE = ("A supervised model errs more on the points of real-adversarial interpolation paths (AdvMixup's) "
                  "than on those of real-real paths (ICT's): AdvMixup finds the flaws that break the cluster "
                  "assumption more.")

# The radii span about 6 % to 55 % of the mean L2 norm of a test image (digits 985, MNIST 2260, raw units).
MEASURED_CLAIMS = [
    MeasuredClaim("advmixup_fgm_digits", "000 (AdvMixup)", ADVMIXUP_FGM_SENTENCE + " (8x8 digits)",
                  ADVMIXUP_FGM_PAPER,
                  claim_measures.Attacked(Experiment("digits", ("advmixup", "ict", "supervised")), "fgm",
                                          (64, 128, 256, 384, 512), "digits_fgm_error_vs_eps.png"),
                  lambda measure, means: measure.below(means)),
    MeasuredClaim("advmixup_fgm_mnist", "000 (AdvMixup)", ADVMIXUP_FGM_SENTENCE + " (MNIST, 100 labels)",
                  ADVMIXUP_FGM_PAPER,
                  claim_measures.Attacked(mnist(("advmixup", "ict", "supervised")), "fgm",
                                          (128, 255, 510, 765, 1275), "mnist100_fgm_error_vs_eps.png"),
                  lambda measure, means: measure.below(means)),
    MeasuredClaim("advmixup_paths_digits", "000 (AdvMixup)", PATHS_SENTENCE + " (8x8 digits; AdvMixup's ε 1.0)",
                  "a figure (CIFAR-10, SVHN): the real-adversarial curve above the real-real one",
                  claim_measures.Paths(Experiment("digits", ("supervised",)), 1.0,
                                       "digits_supervised_interpolation_paths.png"),
                  lambda measure, means: measure.above(means)),
    MeasuredClaim("advmixup_paths_mnist", "000 (AdvMixup)", PATHS_SENTENCE + " (MNIST, 100 labels; AdvMixup's ε 0.3)",
                  "a figure (CIFAR-10, SVHN): the real-adversarial curve above the real-real one",
                  claim_measures.Paths(mnist(("supervised",)), 0.3,
                                       "mnist100_supervised_interpolation_paths.png"),
                  lambda measure, means: measure.above(means)),
]


# Measured by other benchmarks (step time) or not yet measured on strong models.
OTHER_CLAIMS = [
    ("xvat_step_time", "004 (xAT/xVAT)", "An xVAT step takes at most 0.7 of a VAT step.",
     "0.65 (poster)", "0.54 (inductive) and 0.59 (transductive) on conv-large 32x32x3; 0.97 on the MNIST MLP "
     "(`benchmarks/step_time.py`, docs/performance.md)", "held on the convolutional network, not on the MLP"),
    ("scar_table2", "002 (SCAR)", "Sensitivity rises and specificity falls as the selection radius ε grows "
     "(Table 2).", "CIFAR-10 test set, sensitivity / specificity %: VAT ε 1 92.22 / 47.10 … ε 6 98.93 / 22.86; "
     "ε 1: MixMatch 98.91 / 24.13, FixMatch 99.59 / 15.63",
     "each SCAR run's `scar_table.md` (kept under docs/benchmarks/runs/<data set>/scar*/seed*/)",
     "see docs/robustness.md"),
    ("xvat_masks", "004 (xAT/xVAT)", "Multiplicative perturbations (masks) are more perceptible and more "
     "interpretable than VAT's additive ones (Fig. 5).", "a figure (MNIST, SVHN, CIFAR-10)",
     "digits, seed 1, written by training: docs/figures/digits_xvat_adversarial_grid.png and "
     "digits_xat_adversarial_grid.png (rows: input, VAT direction, FGSM, median mask, masked input)",
     "held by eye, with a cost: the masks trace the stroke and delete all of it, so the masked digit has no "
     "class left (docs/defaults.md)"),
    ("wise_grid", "001 (WISE 2019)", "The generator's adversarial samples are more diverse than VAT's "
     "(colour, pixel-wise, local spatial changes, removal of key attributes).", "figures (SVHN, CIFAR-10)",
     "digits, seed 1: docs/figures/digits_advgen_adversarial_grid.png (rows: input, VAT direction, FGSM, "
     "generator)", "not held by eye on digits: the generator's samples are faint intensity changes of the "
     "input, close to the FGSM row"),
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


def results_dir():
    return os.path.join(flags.FLAGS.docs_dir, "benchmarks", "runs")


def tables_dir():
    return os.path.join(flags.FLAGS.docs_dir, "benchmarks", "claims")


def train(experiment, output):
    """matrix.py's runs of ``experiment`` (reused when finished), its table written to ``output``."""
    args = [sys.executable, os.path.join(ROOT, "benchmarks", "matrix.py"), *experiment.matrix_args(),
            f"--parallel={flags.FLAGS.parallel}", f"--runs_dir={flags.FLAGS.runs_dir}",
            f"--results_dir={results_dir()}", f"--output={output}"]
    print("train:", shlex.join(args[1:]), flush=True)
    subprocess.check_call(args, cwd=os.path.join(ROOT, "benchmarks"))


def render_measured(claim):
    """The claim's row of claims.md; writes its full table to docs/benchmarks/claims/<id>.md."""
    measure = claim.measure
    ours, table, means = measure.summary(flags.FLAGS.docs_dir)
    verdict = claim.verdict(measure, means) if means is not None else "not measured yet"
    figure = ""
    if means is not None and hasattr(measure, "draw"):
        measure.draw(flags.FLAGS.docs_dir)
        figure = f" (figure docs/figures/{measure.figure})"
    with open(os.path.join(tables_dir(), claim.id + ".md"), "w") as f:
        f.write(f"# {claim.id}\n\n{claim.sentence}\n\nCommand: `{measure.command()}` on the runs of "
                f"`python benchmarks/matrix.py {' '.join(measure.experiment.matrix_args())}` (mean ± std over seeds "
                f"{', '.join(measure.experiment.seeds)}).\n\n{table}\n\nVerdict: **{verdict}**\n")
    return (f"| {claim.id} | {claim.paper} | {claim.sentence} | {claim.paper_numbers} | {ours}{figure} | "
            f"`{measure.command()}` | **{verdict}** |")


def main(argv):
    del argv
    by_id = {claim.id: claim for claim in CLAIMS + MEASURED_CLAIMS}
    unknown = [c for c in flags.FLAGS.claims if c not in by_id]
    if unknown:
        raise app.UsageError(f"--claims: unknown {unknown}; known: {', '.join(by_id)}")
    os.makedirs(tables_dir(), exist_ok=True)
    if not flags.FLAGS.report_only:
        for claim_id in flags.FLAGS.claims:
            claim = by_id[claim_id]
            if isinstance(claim, Claim):
                train(claim.experiment, os.path.join(tables_dir(), claim_id + ".md"))
                continue
            for experiment in claim.measure.trainings():
                train(experiment, os.devnull)
            claim.measure.measure(flags.FLAGS.runs_dir, flags.FLAGS.docs_dir)
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
    lines += ["", "## Robustness and interpolation paths", "",
              "Measured on the trained runs of the matrix (the rows above share their budget); the full tables "
              "are in `docs/benchmarks/claims/<claim>.md`.", "",
              "| claim | paper | claim in one sentence | paper's numbers | ours | command | verdict |",
              "|---|---|---|---|---|---|---|"]
    lines += [render_measured(claim) for claim in MEASURED_CLAIMS]
    lines += ["", "## Claims that are not rows of matrix.py runs", "",
              "| claim | paper | claim in one sentence | paper's numbers | ours | verdict |", "|---|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in OTHER_CLAIMS]
    output = os.path.join(flags.FLAGS.docs_dir, "claims.md")
    with open(output, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", output)


if __name__ == "__main__":
    app.run(main)
