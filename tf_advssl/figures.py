"""Pictures comparing trained runs (``bin/plot.py``): loads the runs and their data,
computes what the pictures show (``analysis``, ``robustness``) and has ``plotting`` draw it."""
from __future__ import annotations

import json
import os

import tensorflow as tf

from tf_advssl import analysis, plotting, robustness
from tf_advssl import data as data_lib
from tf_advssl.config import ConfigError

PLOT_KINDS = ("auto", "decision_boundary", "adversarial_examples", "robustness", "interpolation_paths")


def plot_runs(workdirs, kind: str = "auto", out: str | None = None, attack: str = "fgm",
              path_eps: float | None = None) -> list:
    """Pictures comparing trained runs (``bin/plot.py``); returns the paths written.

    kind:
      decision_boundary     2-D datasets: one panel per run (class regions, labeled,
                            unlabeled and test points).
      adversarial_examples  image datasets: original / VAT / FGSM / method-specific rows
                            (``analysis.adversarial_views``), one block of rows per run.
      robustness            error against epsilon from each run's robustness.json
                            (``attack``: its key there, e.g. "fgm"; see bin/evaluate.py).
      interpolation_paths   error along real-real and real-adversarial paths
                            (``analysis.interpolation_path_errors``) of each run's test set, with
                            the adversarial end at L2 radius ``path_eps`` (model space; default:
                            the run's own ``vat_eps``, else 1.0); the numbers also go to the
                            PNG's name with ``.json``.
      auto                  decision_boundary for 2-D data, adversarial_examples for images,
                            plus robustness when every run has that attack in robustness.json.
    ``out``: the PNG (default ``<first workdir>/<kind>_runs.png``).
    """
    if kind not in PLOT_KINDS:
        raise ConfigError(f"--kind={kind!r} is not one of {', '.join(PLOT_KINDS)}")
    if path_eps is not None and not path_eps > 0:
        raise ConfigError(f"--path_eps must be > 0, got {path_eps}")
    if not workdirs:
        raise ConfigError("--workdir is required: one or more run directories written by bin/train.py")
    for workdir in workdirs:
        if not os.path.isfile(os.path.join(workdir, "config.json")):
            raise ConfigError(f"--workdir={workdir} holds no run (no config.json)")

    def robustness_result(workdir):
        path = os.path.join(workdir, robustness.RESULT_FILE)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f).get("attacks", {}).get(attack)

    if kind == "robustness":
        results = [robustness_result(w) for w in workdirs]
        missing = [w for w, r in zip(workdirs, results) if r is None]
        if missing:
            raise ConfigError(f"--workdir={','.join(missing)}: no '{attack}' result in robustness.json; "
                              f"run bin/evaluate.py --attack={attack} first")
        path = out or os.path.join(workdirs[0], f"robustness_{attack}_runs.png")
        return [plotting.robustness_figure(results, path)]

    runs = robustness.load_runs(workdirs)
    datasets = {}
    for run in runs:
        key = robustness.data_key(run.config)
        if key not in datasets:
            datasets[key] = data_lib.load(run.config)
        run.data = datasets[key]
    two_d = all(run.spec.input_shape == (2,) for run in runs)
    kinds = [kind]
    if kind == "auto":
        kinds = ["decision_boundary" if two_d else "adversarial_examples"]
        if all(robustness_result(w) is not None for w in workdirs):
            kinds.append("robustness")
    written = []
    for current in kinds:
        path = out if (out and len(kinds) == 1) else os.path.join(
            workdirs[0], f"{current}{'_' + attack if current == 'robustness' else ''}_runs.png")
        if current == "robustness":
            written += plot_runs(workdirs, "robustness", path, attack)
        elif current == "decision_boundary":
            if not two_d:
                raise ConfigError("--kind=decision_boundary needs 2-D datasets (two_circles, moons, npz vectors)")
            panels = []
            for run in runs:
                metrics_path = os.path.join(run.workdir, "metrics.json")
                title = run.name
                if os.path.exists(metrics_path):
                    with open(metrics_path) as f:
                        title += f" (test error {json.load(f)['test_error']:.2f} %)"
                panels.append((title, run.model, run.data))
            written.append(plotting.decision_boundary_figure(panels, path))
        elif current == "adversarial_examples":
            if not all(run.spec.is_image for run in runs):
                raise ConfigError("--kind=adversarial_examples needs image datasets")
            rows, predictions = [], []
            for run in runs:
                run_rows, run_predictions = analysis.adversarial_views(run.model, run.data)
                rows += [(f"{run.name}: {title}", images) for title, images in run_rows]
                predictions += run_predictions
            written.append(plotting.adversarial_grid_figure(rows, path, predictions))
        else:
            panels, records = [], []
            for run in runs:
                x = run.preprocessor(tf.constant(run.data.x_test[:1000]))
                eps = path_eps if path_eps is not None else (getattr(run.model.params, "vat_eps", 0.0) or 1.0)
                result = analysis.interpolation_path_errors(
                    lambda v, m=run.model: m(v, training=False), x, run.data.y_test[:1000], eps=eps, xi=0.0)
                panels.append((run.name, result))
                records.append({"workdir": run.workdir, "name": run.name, "eps_model_space": float(eps), **result})
            written.append(plotting.interpolation_paths_figure(panels, path))
            with open(os.path.splitext(path)[0] + ".json", "w") as f:
                json.dump(records, f, indent=2)
            written.append(os.path.splitext(path)[0] + ".json")
    return written
