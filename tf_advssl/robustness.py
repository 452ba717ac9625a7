"""Robustness evaluation: white-box and transfer (black-box) attacks in raw input space.

A trained run is a classifier on *model-space* inputs plus the run's
:class:`~tf_advssl.data.Preprocessor` (raw -> model space).  Attacks here run on
the composition ``raw -> preprocessor -> logits``, so

* epsilon is stated in the **raw input space** of the dataset: uint8 pixel
  values 0..255 for images (an L2 epsilon is the Euclidean norm over all pixels
  and channels in those units), the raw feature values for vector datasets;
* adversarial inputs are clipped to the valid raw range: [0, 255] for images
  (``DataSpec.pixel_range``; not rounded to integers), the per-feature
  [min, max] of the run's training set for vectors.

Attacks (``perturbations.adversarial_examples``, shared with training): FGSM
(L-inf), FGM (L2), PGD (L-inf or L2, random start, step size, iterations),
untargeted (raise the cross-entropy of the true label) or targeted (lower the
cross-entropy of a target class: ``next`` = (y + 1) mod C, ``random`` (another
class, seeded), ``least_likely`` (the attacked model's least likely class on the
clean input) or a fixed class index).

White-box: the evaluated model is attacked.  Black-box (transfer): a separately
trained substitute run is attacked and its adversarial examples are fed to the
evaluated model.  The error rate under attack is ``100 * mean(argmax f(x_adv) != y)``
on the first ``num_examples`` examples of the split (all by default), the
numbers of the AdvMixup seed's robustness tables.

``evaluate(config)`` returns one result dict per run, writes
``W/robustness.json`` (results keyed by attack, e.g. ``"fgm"`` or
``"pgd_linf-targeted-next"``; other attacks already in the file are kept) and
``W/robustness_<key>.png`` (error against epsilon) into every run directory,
and, with ``output_dir``, the combined table, json and plot of all runs there.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Optional

import numpy as np

from tf_advssl import data as data_lib
from tf_advssl import perturbations, plotting, runs
from tf_advssl.config import ConfigError
from tf_advssl.data import eps_space_note, input_bounds

# TensorFlow, the data module and the perturbations are imported inside the functions
# that need them, so that bin/evaluate.py rejects bad flags without loading TensorFlow.
TARGET_MODES = ("none", "next", "random", "least_likely")
SPLITS = ("test", "val", "train")
RESULT_FILE = "robustness.json"


@dataclasses.dataclass
class EvaluationConfig:
    """What ``bin/evaluate.py`` runs; every field is a flag of the same name."""
    workdirs: tuple = ()                     # run directories to evaluate (rows of the table)
    attack: str = "fgm"                      # fgsm | fgm | pgd_linf | pgd_l2
    eps: tuple = (1.0,)                      # radii in raw input space
    substitute_workdir: Optional[str] = None  # run attacked for the black-box (transfer) table
    target: str = "none"                     # none | next | random | least_likely | class index
    pgd_steps: int = 10
    pgd_step_size: Optional[float] = None    # raw space; default 2.5 * eps / pgd_steps
    pgd_random_start: bool = True
    split: str = "test"                      # test | val | train
    num_examples: Optional[int] = None       # first N examples of the split (default: all)
    batch_size: int = 500
    seed: int = 0                            # random starts and random targets
    output_dir: Optional[str] = None         # combined table/json/plot of all runs

    @property
    def targeted(self) -> bool:
        return self.target != "none"

    @property
    def key(self) -> str:
        """Name of this attack in robustness.json."""
        return self.attack + (f"-targeted-{self.target}" if self.targeted else "")


def validate(config: EvaluationConfig) -> EvaluationConfig:
    """Cheap checks before any work; raises ConfigError naming the flag."""
    if not config.workdirs:
        raise ConfigError("--workdir is required: one or more run directories written by bin/train.py "
                          "(repeat the flag or separate them by commas)")
    for workdir in list(config.workdirs) + ([config.substitute_workdir] if config.substitute_workdir else []):
        flag = "--substitute_workdir" if workdir == config.substitute_workdir else "--workdir"
        if not os.path.isfile(os.path.join(workdir, "config.json")):
            raise ConfigError(f"{flag}={workdir} holds no run (no config.json); pass a directory "
                              f"written by bin/train.py")
        if not os.path.isfile(os.path.join(workdir, "checkpoints", "checkpoint")):
            raise ConfigError(f"{flag}={workdir} has no checkpoint to restore")
    if config.attack not in perturbations.ATTACKS:
        raise ConfigError(f"--attack={config.attack!r} is not one of {', '.join(perturbations.ATTACKS)}")
    if not config.eps:
        raise ConfigError("--eps needs at least one radius, e.g. --eps=1,2,3,5,8")
    for eps in config.eps:
        if not np.isfinite(eps) or eps < 0:
            raise ConfigError(f"--eps values must be finite and >= 0 (raw input space), got {eps}")
    if config.target not in TARGET_MODES and not str(config.target).isdigit():
        raise ConfigError(f"--target={config.target!r} must be one of {', '.join(TARGET_MODES)} "
                          f"or a class index")
    if config.pgd_steps <= 0:
        raise ConfigError(f"--pgd_steps must be > 0, got {config.pgd_steps}")
    if config.pgd_step_size is not None and config.pgd_step_size <= 0:
        raise ConfigError(f"--pgd_step_size must be > 0, got {config.pgd_step_size}")
    if config.split not in SPLITS:
        raise ConfigError(f"--split={config.split!r} is not one of {', '.join(SPLITS)}")
    if config.num_examples is not None and config.num_examples <= 0:
        raise ConfigError(f"--num_examples must be > 0, got {config.num_examples}")
    if config.batch_size <= 0:
        raise ConfigError(f"--batch_size must be > 0, got {config.batch_size}")
    return config


# ----- runs in raw space ----------------------------------------------------------

@dataclasses.dataclass
class Run:
    """A restored run: its model composed with its preprocessor acts on raw inputs."""
    workdir: str
    config: object
    spec: object          # data.DataSpec
    preprocessor: object  # data.Preprocessor
    model: object
    name: str = ""
    data: object = None   # the run's SSLData once loaded (bin/plot.py)
    step: int = 0         # training step of the restored checkpoint
    finished: bool = True  # the run wrote its metrics.json (trained to config.train_steps)

    def logits(self, x_raw):
        """Logits (float32) of raw inputs, inference mode (the EMA teacher when the run evaluates it)."""
        import tensorflow as tf
        return tf.cast(self.model(self.preprocessor(x_raw), training=False), tf.float32)


def load_run(workdir: str) -> Run:

    model, config, spec, preprocessor = runs.restore_model(workdir)
    step = int(model.optimizer.iterations.numpy())
    finished = os.path.isfile(os.path.join(workdir, "metrics.json"))
    name = config.method if finished else f"{config.method} [step {step} of {config.train_steps}]"
    return Run(workdir=workdir, config=config, spec=spec, preprocessor=preprocessor, model=model,
               name=name, step=step, finished=finished)


def load_runs(workdirs) -> list:
    """``load_run`` of each directory; a name that several runs share gets its directory's name."""
    loaded = [load_run(w) for w in workdirs]
    names = [run.name for run in loaded]
    for run in loaded:
        if names.count(run.name) > 1:
            run.name = f"{run.name} ({os.path.basename(os.path.normpath(run.workdir))})"
    return loaded


_DATA_FIELDS = ("dataset", "data_dir", "tfds_manual_dir", "noise", "circles_factor", "num_train_synthetic",
                "num_test_synthetic", "split_seed", "validation_size", "num_labeled", "balanced", "zca")


def data_key(config) -> str:
    return json.dumps({name: getattr(config, name) for name in _DATA_FIELDS}, sort_keys=True, default=str)


def model_space_eps(preprocessor, eps_values) -> Optional[list]:
    """The same radii in the model's input space when the preprocessing is a scale and shift
    (None with ZCA, which has no fixed relation between the two norms)."""
    if preprocessor.zca_matrix is not None:
        return None
    return [float(eps) * preprocessor.scale for eps in eps_values]


def predict(logits_fn, x, batch_size: int) -> np.ndarray:
    """argmax of ``logits_fn`` over ``x`` in batches; int64 (n,)."""
    import tensorflow as tf
    out = [np.argmax(logits_fn(tf.constant(x[i:i + batch_size])).numpy(), axis=-1)
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.int64) if out else np.zeros((0,), np.int64)


def attack_targets(mode: str, y: np.ndarray, num_classes: int, *, logits_fn=None, x=None,
                   batch_size: int = 500, seed: int = 0) -> np.ndarray:
    """Target class per example for a targeted attack (see the module docstring)."""
    y = np.asarray(y, np.int64)
    if mode == "next":
        return (y + 1) % num_classes
    if mode == "random":
        return (y + np.random.RandomState(seed).randint(1, num_classes, size=len(y))) % num_classes
    if mode == "least_likely":
        import tensorflow as tf
        out = [np.argmin(logits_fn(tf.constant(x[i:i + batch_size])).numpy(), axis=-1)
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out).astype(np.int64)
    target = int(mode)
    if not 0 <= target < num_classes:
        raise ConfigError(f"--target={mode} must be a class index in [0, {num_classes})")
    return np.full(len(y), target, np.int64)


def attack(logits_fn, x, labels, eps: float, config: EvaluationConfig, bounds) -> np.ndarray:
    """Adversarial versions of raw inputs ``x`` (numpy), in batches; ``labels`` are the true
    classes (untargeted) or the targets (targeted)."""
    import keras
    import tensorflow as tf


    clip_min, clip_max = bounds

    seed = keras.random.SeedGenerator(config.seed)
    batches = []
    for i in range(0, len(x), config.batch_size):
        batches.append(perturbations.adversarial_examples(
            logits_fn, tf.constant(x[i:i + config.batch_size], tf.float32),
            tf.constant(labels[i:i + config.batch_size]), float(eps), attack=config.attack,
            targeted=config.targeted, clip_min=clip_min, clip_max=clip_max, num_steps=config.pgd_steps,
            step_size=config.pgd_step_size, random_start=config.pgd_random_start, seed=seed).numpy())
    return np.concatenate(batches)


# ----- evaluation -------------------------------------------------------------------

def _split(data, split: str):
    if split == "test":
        return data.x_test, data.y_test
    if split == "val":
        if data.x_val is None:
            raise ConfigError("--split=val: the run has no validation split (trained without --validation_size)")
        return data.x_val, data.y_val
    return data.x_train, data.y_train


def _error(predicted, y) -> float:
    return float(100.0 * np.mean(predicted != y)) if len(y) else float("nan")


def evaluate(config: EvaluationConfig, verbose: bool = True) -> list:
    """Run the attack of ``config`` on every run; write the files (module docstring).

    Returns one result dict per run, in the order of ``config.workdirs``.
    """

    config = validate(config)
    runs = load_runs(config.workdirs)
    substitute = load_run(config.substitute_workdir) if config.substitute_workdir else None
    for run in runs + ([substitute] if substitute is not None else []):
        if not run.finished:
            print(f"warning: {run.workdir} is an unfinished run: its latest checkpoint is at step {run.step} "
                  f"of {run.config.train_steps}; evaluating that checkpoint", file=sys.stderr)
    for run in runs:
        if substitute is not None and (substitute.spec.input_shape != run.spec.input_shape
                                       or substitute.spec.num_classes != run.spec.num_classes):
            raise ConfigError(f"--substitute_workdir={config.substitute_workdir} was trained on "
                              f"{substitute.spec.name} {substitute.spec.input_shape}, but --workdir="
                              f"{run.workdir} on {run.spec.name} {run.spec.input_shape}")

    datasets, transfer_cache, results = {}, {}, []
    for run in runs:
        key = data_key(run.config)
        if key not in datasets:
            datasets[key] = data_lib.load(run.config)
        data = datasets[key]
        x, y = _split(data, config.split)
        if config.num_examples is not None:
            x, y = x[:config.num_examples], y[:config.num_examples]
        x = np.asarray(x, np.float32)
        bounds = input_bounds(data.spec, data.x_train)
        result = {
            "workdir": run.workdir, "name": run.name, "method": run.config.method, "dataset": run.spec.name,
            "attack": config.attack, "target": config.target, "eps": [float(e) for e in config.eps],
            "eps_space": eps_space_note(run.spec, config.attack),
            "eps_model_space": model_space_eps(run.preprocessor, config.eps),
            "clip": {"min": np.asarray(bounds[0]).tolist(), "max": np.asarray(bounds[1]).tolist()},
            "split": config.split, "num_examples": int(len(y)),
            "step": run.step, "train_steps": run.config.train_steps, "finished": run.finished,
            "clean_error": _error(predict(run.logits, x, config.batch_size), y),
        }
        if config.attack.startswith("pgd"):
            result["pgd"] = {"steps": config.pgd_steps, "random_start": config.pgd_random_start,
                             "step_size": config.pgd_step_size if config.pgd_step_size is not None
                             else "2.5 * eps / steps", "seed": config.seed}

        labels = y
        if config.targeted:
            labels = attack_targets(config.target, y, run.spec.num_classes, logits_fn=run.logits, x=x,
                                    batch_size=config.batch_size, seed=config.seed)
        white = {"error": [], "target_success": [] if config.targeted else None}
        for eps in config.eps:
            predicted = predict(run.logits, attack(run.logits, x, labels, eps, config, bounds), config.batch_size)
            white["error"].append(_error(predicted, y))
            if config.targeted:
                white["target_success"].append(float(100.0 * np.mean(predicted == labels)))
        result["white_box"] = white

        result["black_box"] = None
        if substitute is not None:
            black = {"substitute_workdir": substitute.workdir, "substitute_method": substitute.config.method,
                     "error": [], "substitute_error": []}
            for eps in config.eps:
                cache_key = (key, float(eps))
                if cache_key not in transfer_cache:
                    sub_labels = y if not config.targeted else attack_targets(
                        config.target, y, run.spec.num_classes, logits_fn=substitute.logits, x=x,
                        batch_size=config.batch_size, seed=config.seed)
                    x_adv = attack(substitute.logits, x, sub_labels, eps, config, bounds)
                    transfer_cache[cache_key] = (
                        x_adv, _error(predict(substitute.logits, x_adv, config.batch_size), y))
                x_adv, substitute_error = transfer_cache[cache_key]
                black["error"].append(_error(predict(run.logits, x_adv, config.batch_size), y))
                black["substitute_error"].append(substitute_error)
            result["black_box"] = black
        write_run_result(run.workdir, config, result)
        results.append(result)

    table = format_table(results, config)
    if verbose:
        print(table)
    if config.output_dir:
        os.makedirs(config.output_dir, exist_ok=True)
        with open(os.path.join(config.output_dir, f"robustness_{config.key}.md"), "w") as f:
            f.write(table + "\n")
        with open(os.path.join(config.output_dir, f"robustness_{config.key}.json"), "w") as f:
            json.dump(results, f, indent=2)
        plotting.robustness_figure(results, os.path.join(config.output_dir, f"robustness_{config.key}.png"))
    return results


def write_run_result(workdir: str, config: EvaluationConfig, result: dict) -> None:
    """Merge ``result`` into W/robustness.json under ``config.key`` and draw W/robustness_<key>.png."""
    path = os.path.join(workdir, RESULT_FILE)
    content = {"attacks": {}}
    if os.path.exists(path):
        with open(path) as f:
            content = json.load(f)
    content.setdefault("attacks", {})[config.key] = result
    with open(path, "w") as f:
        json.dump(content, f, indent=2)
    plotting.robustness_figure([result], os.path.join(workdir, f"robustness_{config.key}.png"))


def format_table(results: list, config: EvaluationConfig) -> str:
    """Markdown tables like the AdvMixup seed's: error rate (%) under attack, one row per model,
    one column per epsilon; white-box, then black-box when a substitute was attacked."""
    if not results:
        return ""
    first = results[0]
    what = f"{'targeted (' + config.target + ') ' if config.targeted else ''}{config.attack}"
    lines = [f"Error rate (%) under {what} attacks on {first['num_examples']} {config.split} examples "
             f"of {first['dataset']}.", f"Note: {first['eps_space']}."]
    if config.attack.startswith("pgd"):
        step = config.pgd_step_size if config.pgd_step_size is not None else "2.5 eps / steps"
        lines.append(f"PGD: {config.pgd_steps} steps of size {step}, random start: {config.pgd_random_start}.")

    def table(title, symbol, rows):
        header = ["model", "clean"] + [f"{symbol} = {eps:g}" for eps in config.eps]
        out = ["", f"{title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, clean, errors in rows:
            cells = [name, f"{clean:.2f}" if np.isfinite(clean) else "-"] + [f"{e:.2f}" for e in errors]
            out.append("| " + " | ".join(cells) + " |")
        return out

    lines += table("White-box", "eps_w", [(r["name"], r["clean_error"], r["white_box"]["error"]) for r in results])
    if config.targeted:
        lines += table("White-box target success rate (%)", "eps_w",
                       [(r["name"], float("nan"), r["white_box"]["target_success"]) for r in results])
    if first["black_box"] is not None:
        sub = first["black_box"]
        lines += table(f"Black-box (transfer from the {sub['substitute_method']} substitute "
                       f"{sub['substitute_workdir']}; its own white-box error: "
                       f"{', '.join(f'{e:.2f}' for e in sub['substitute_error'])})", "eps_b",
                       [(r["name"], r["clean_error"], r["black_box"]["error"]) for r in results])
    return "\n".join(lines)
