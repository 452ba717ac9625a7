"""Claims measured on trained runs rather than by their test error: robustness under attack
(``bin/evaluate.py``) and the error along interpolation paths (``bin/plot.py``).

Both work on the runs of a claims.py ``Experiment``: the trainings are matrix.py's, the
measurement runs on their run directories (under --runs_dir) and its numbers are kept under the
docs directory: next to each run's metrics.json in benchmarks/runs (``robustness.json``) or next
to the figure in figures/ (``<figure>.json``), so the verdicts can be recomputed without the run
directories.
"""
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from rows import run_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOXES = (("white_box", "white-box"), ("black_box", "black-box (transfer)"))


def _mean_std(values):
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


@dataclasses.dataclass(frozen=True)
class Attacked:
    """The error under ``attack`` at each radius ``eps`` (raw input space) of an experiment's runs,
    white-box and transferred from a supervised substitute trained on the same budget with a
    seed of its own (``substitute_seed``: its own labels and initial weights)."""
    experiment: object   # claims.Experiment
    attack: str
    eps: tuple
    figure: str          # a name under docs/figures: the mean error of each row against ε
    substitute_seed: str = "101"

    def substitute(self):
        return dataclasses.replace(self.experiment, rows=("supervised",), seeds=(self.substitute_seed,))

    def trainings(self):
        return [self.experiment, self.substitute()]

    def _kept(self, docs_dir, row, seed):
        e = self.experiment
        return os.path.join(docs_dir, "benchmarks", "runs", run_path(e.dataset, row, seed, e.tag), "robustness.json")

    def result(self, docs_dir, row, seed):
        """This attack's entry of the run's robustness.json, if it has these radii and the substitute."""
        path = self._kept(docs_dir, row, seed)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            found = json.load(f).get("attacks", {}).get(self.attack)
        substitute = run_path(self.experiment.dataset, "supervised", self.substitute_seed, self.experiment.tag)
        if (not found or [float(e) for e in self.eps] != found["eps"] or not found.get("black_box")
                or not os.path.normpath(found["black_box"]["substitute_workdir"]).endswith(os.sep + substitute)):
            return None
        return found

    def results(self, docs_dir):
        """{row: [result of each seed (None where not measured)]}."""
        return {row: [self.result(docs_dir, row, seed) for seed in self.experiment.seeds]
                for row in self.experiment.rows}

    def measure(self, runs_dir, docs_dir):
        """bin/evaluate.py on every finished run still without a result; copies robustness.json."""
        e = self.experiment
        substitute = os.path.join(runs_dir, run_path(e.dataset, "supervised", self.substitute_seed, e.tag))
        missing = {}  # workdir: (row, seed) of the finished runs without a result
        for row, found in self.results(docs_dir).items():
            for seed, result in zip(e.seeds, found):
                workdir = os.path.join(runs_dir, run_path(e.dataset, row, seed, e.tag))
                if result is None and os.path.exists(os.path.join(workdir, "metrics.json")):
                    missing[workdir] = (row, seed)
        if not missing or not os.path.exists(os.path.join(substitute, "metrics.json")):
            return
        subprocess.check_call([sys.executable, os.path.join(ROOT, "bin", "evaluate.py"),
                               f"--workdir={','.join(missing)}", f"--attack={self.attack}",
                               f"--eps={','.join(str(v) for v in self.eps)}", f"--substitute_workdir={substitute}"],
                              cwd=ROOT)
        for workdir, (row, seed) in missing.items():
            shutil.copyfile(os.path.join(workdir, "robustness.json"), self._kept(docs_dir, row, seed))

    def summary(self, docs_dir):
        """(ours, table, means) where means[box][row] is the per-radius mean error (None until
        every seed of every row is measured)."""
        header = " | ".join(f"ε {v:g}" for v in self.eps)
        results = self.results(docs_dir)
        table, ours, means = [], [], {}
        for box, title in BOXES:
            table += [f"#### {title}", "", f"| row | clean | {header} |", "|---" * (len(self.eps) + 2) + "|"]
            means[box] = {}
            cells = []
            for row, found in results.items():
                done = [r for r in found if r]
                if not done:
                    table.append(f"| `{row}` | not measured |" + " |" * len(self.eps))
                    continue
                errors = np.array([r[box]["error"] for r in done])
                clean = [r["clean_error"] for r in done]
                table.append(f"| `{row}` ({len(done)} of {len(found)} seeds) | {_mean_std(clean)} | "
                             + " | ".join(_mean_std(errors[:, k]) for k in range(len(self.eps))) + " |")
                if len(done) == len(found):
                    means[box][row] = errors.mean(axis=0)
                cells.append(f"`{row}` " + "/".join(f"{v:.1f}" for v in errors.mean(axis=0)))
            table.append("")
            ours.append(f"{title}: " + "; ".join(cells))
        if any(len(means[box]) < len(results) for box, _ in BOXES):
            means = None
        radii = "/".join(f"{v:g}" for v in self.eps)
        return (f"{self.attack} error % at ε {radii} (raw input space, mean over seeds): " + "; ".join(ours),
                "\n".join(table), means)

    def draw(self, docs_dir):
        """The figure: each row's error against ε, averaged over seeds (white-box solid, black-box dashed)."""
        sys.path.insert(0, ROOT)
        from tf_advssl import plotting

        curves = []
        for row, found in self.results(docs_dir).items():
            curves.append({"name": f"{row} (mean of {len(found)} seeds)", "attack": self.attack,
                           "dataset": self.experiment.dataset, "eps": list(self.eps),
                           "clean_error": float(np.mean([r["clean_error"] for r in found])),
                           **{box: {"error": list(np.mean([r[box]["error"] for r in found], axis=0))}
                              for box, _ in BOXES}})
        return plotting.robustness_figure(curves, os.path.join(docs_dir, "figures", self.figure))

    def below(self, means):
        """Verdict: the rows' errors increase in the order given at every radius, in both tables;
        otherwise at how many radii each ordered pair holds."""
        rows, counts, held = self.experiment.rows, [], True
        for box, title in BOXES:
            pairs = []
            for a, b in zip(rows, rows[1:]):
                wins = sum(means[box][a][k] < means[box][b][k] for k in range(len(self.eps)))
                held &= wins == len(self.eps)
                pairs.append(f"{a} < {b} at {wins} of {len(self.eps)}")
            counts.append(f"{title}: " + ", ".join(pairs))
        return ("held at every radius, white-box and black-box" if held else "not held: " + "; ".join(counts))

    def command(self):
        e = self.experiment
        radii = ",".join(str(v) for v in self.eps)
        return (f"bin/evaluate.py --workdir=<runs of {', '.join(e.rows)}> --attack={self.attack} --eps={radii} "
                f"--substitute_workdir=<supervised seed {self.substitute_seed}>")


@dataclasses.dataclass(frozen=True)
class Paths:
    """The error of an experiment's runs along real-real and real-adversarial interpolation
    paths (adversarial end: VAT direction at model-space L2 radius ``eps``), drawn to ``figure``
    (a name under docs/figures) with its numbers in the same name with ``.json``."""
    experiment: object   # claims.Experiment
    eps: float
    figure: str

    def trainings(self):
        return [self.experiment]

    def _workdirs(self, runs_dir):
        e = self.experiment
        return [os.path.join(runs_dir, run_path(e.dataset, row, seed, e.tag)) for row in e.rows for seed in e.seeds]

    def records(self, docs_dir):
        path = os.path.join(docs_dir, "figures", os.path.splitext(self.figure)[0] + ".json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            records = json.load(f)
        expected = len(self.experiment.rows) * len(self.experiment.seeds)
        if len(records) != expected or any(r["eps_model_space"] != self.eps for r in records):
            return None
        return records

    def measure(self, runs_dir, docs_dir):
        workdirs = self._workdirs(runs_dir)
        if self.records(docs_dir) is not None or not all(os.path.exists(os.path.join(w, "metrics.json")) for w in workdirs):
            return
        subprocess.check_call([sys.executable, os.path.join(ROOT, "bin", "plot.py"), f"--workdir={','.join(workdirs)}",
                               "--kind=interpolation_paths", f"--path_eps={self.eps}",
                               f"--out={os.path.join(docs_dir, 'figures', self.figure)}"], cwd=ROOT)

    def summary(self, docs_dir):
        records = self.records(docs_dir)
        if records is None:
            return "not measured", "", None
        lambdas = records[0]["lambda"]
        real_real = np.mean([r["real_real"] for r in records], axis=0)
        real_adversarial = np.mean([r["real_adversarial"] for r in records], axis=0)
        table = ["| λ (weight of the real end) | real-real error % | real-adversarial error % |", "|---|---|---|"]
        table += [f"| {lam:g} | {a:.2f} | {b:.2f} |" for lam, a, b in zip(lambdas, real_real, real_adversarial)]
        middle = lambdas.index(0.5)
        ours = (f"mean over {len(records)} runs at λ 0, 0.5: real-real {real_real[0]:.1f}, {real_real[middle]:.1f}; "
                f"real-adversarial {real_adversarial[0]:.1f}, {real_adversarial[middle]:.1f} (figure "
                f"docs/figures/{self.figure})")
        return ours, "\n".join(table), {"lambda": lambdas, "real_real": real_real, "real_adversarial": real_adversarial}

    # Two mean errors closer than this are a tie (one point is four of digits' 400 test images).
    TIE_POINTS = 1.0

    @classmethod
    def above(cls, means):
        """Verdict: real-adversarial error above real-real error at every λ < 1 (λ = 1 is the
        real end x_i of both paths), a gap under TIE_POINTS counting as a tie."""
        gaps = [(lam, b - a) for lam, a, b in zip(means["lambda"], means["real_real"], means["real_adversarial"])
                if lam < 1.0]
        below = [f"λ {lam:g} ({gap:+.2f})" for lam, gap in gaps if gap <= -cls.TIE_POINTS]
        ties = [f"λ {lam:g} ({gap:+.2f})" for lam, gap in gaps if -cls.TIE_POINTS < gap <= 0]
        if below:
            return "not held: real-adversarial below real-real at " + ", ".join(below)
        return "held at every λ < 1" + (f", ties (within {cls.TIE_POINTS:g} point) at " + ", ".join(ties)
                                         if ties else "")

    def command(self):
        e = self.experiment
        return (f"bin/plot.py --workdir=<runs of {', '.join(e.rows)}, seeds {', '.join(e.seeds)}> "
                f"--kind=interpolation_paths --path_eps={self.eps} --out=docs/figures/{self.figure}")
