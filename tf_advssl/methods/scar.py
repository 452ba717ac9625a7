"""SCAR: Selecting Clean samples with Adversarial Robustness (Yang, Kim, Kim,
"Improving Performance of Semi-Supervised Learning by Adversarial Attacks";
seed 002, Algorithm 1).  No public code.

Stage 1 is any run directory (--pretrained_workdir), trained by any method.
Stage 2 (this method) starts from its weights, theta_0 = theta~, and every epoch t:

    y~_j     = F_theta~(x_j)                         pseudo-label of every unlabeled x_j
    x_j^adv  = A_eps(x_j, y~_j; f_theta~)            FGSM (or PGD) raising CE(y~_j)
    D_{l,t}  = D_l u {(x_j, y~_j) : F_theta~(x_j^adv) = y~_j}
    theta    <- theta - eta grad l_semi(D_{l,t}, D_ul; f_theta)      (the --scar_base method's loss)

theta~ is a frozen copy of the pretrained weights (Algorithm 1), so with FGSM
the selected set is the same every epoch; --scar_relabel re-labels and
re-attacks with a frozen copy of the current weights at the start of every
epoch instead (the theta^ of the seed's eq. 4).  An example of D_l keeps its
true label.  The labeled stream of the base method is drawn uniformly from
D_{l,t}; the unlabeled stream is unchanged.  An epoch is one pass over the
unlabeled set (ceil(N / unlabeled_batch_size) steps) unless --scar_epoch_steps.

The attack runs in the raw input space of the data, like ``bin/evaluate.py``:
--scar_eps is in pixel values 0..255 for images (the seed's eps = 1..6 on
[0, 1]-scaled CIFAR-10 images reads as k/255), raw coordinates for vectors,
and adversarial inputs are clipped to the valid raw range.

Selection quality (seed, eqs. 5-6), from the true labels of the unlabeled set:

    sensitivity = |{y = F(x) = F(x^adv)}| / |{F(x) = F(x^adv)}|     (selected, pseudo-label right)
    specificity = |{y != F(x), F(x) != F(x^adv)}| / |{F(x) != F(x^adv)}|   (rejected, pseudo-label wrong)

Files: ``scar_selection.json`` / ``.csv`` (per epoch: selected count,
sensitivity, specificity with their counts) and, at the end,
``scar_table.md`` / ``.json``: the seed's Table 2 for the pretrained model on
the test set at eps / 4, eps / 2, eps, 2 eps, 4 eps (``selection_table``).

For a linear classifier and two classes, an example survives an L-inf FGSM
step of size eps exactly when its margin z_y - z_other exceeds
eps ||w_y - w_other||_1 (tests/test_scar.py).
"""
import csv
import dataclasses
import json
import math
import os

import keras
import numpy as np
import tensorflow as tf

from tf_advssl import data as data_lib
from tf_advssl import perturbations
from tf_advssl.config import ConfigError
from tf_advssl.hparams.scar import SCARParams, read_config
from tf_advssl.methods import get_method
from tf_advssl.methods.base import SSLModel

SELECTION_FILE = "scar_selection"
TABLE_FILE = "scar_table"
# Fields of the pretrained run's config that the SCAR run must share: same data split, same network.
SHARED_FIELDS = ("dataset", "num_labeled", "balanced", "split_seed", "validation_size", "noise", "circles_factor",
                 "num_train_synthetic", "num_test_synthetic", "zca", "network", "mlp_widths",
                 "mlp_batch_norm", "dropout", "mlp_wn_input_noise", "mlp_wn_hidden_noise")


# ----- selection (Algorithm 1, lines 5-8) and its quality (eqs. 5-6) ---------------------

def robust_selection(logits_fn, x, eps: float, *, attack: str = "fgsm", clip_min=None, clip_max=None,
                     batch_size: int = 500, num_steps: int = 10, seed: int = 0):
    """Pseudo-labels and the SCAR criterion for every row of ``x``.

    Args:
      logits_fn: x -> logits of the frozen model (inference mode), in the space of ``x``.
        The compiled selection is cached on it, so pass the same callable every epoch.
      x: numpy inputs (n, ...); eps and the clip bounds in the same space.
      attack: "fgsm" / "fgm" (``perturbations.prediction_survives``) or "pgd_linf" / "pgd_l2"
        (``num_steps`` steps from a random start drawn from ``seed``).
    Returns (pseudo_labels int64 (n,), survives bool (n,)) as numpy.
    """
    select, seed_generator = _compiled_selection(logits_fn, attack, num_steps, clip_min, clip_max)
    seed_generator.state.assign(tf.cast([seed, 0], seed_generator.state.dtype))
    eps = tf.constant(eps, tf.float32)
    labels, survives = [], []
    for start in range(0, len(x), batch_size):
        classes, ok = select(tf.constant(x[start:start + batch_size], tf.float32), eps)
        labels.append(classes.numpy())
        survives.append(ok.numpy())
    if not labels:
        return np.zeros((0,), np.int64), np.zeros((0,), bool)
    return np.concatenate(labels).astype(np.int64), np.concatenate(survives).astype(bool)


def _compiled_selection(logits_fn, attack, num_steps, clip_min, clip_max):
    """(tf.function (x, eps) -> (classes, survives), its SeedGenerator), cached on ``logits_fn``."""
    key = (attack, num_steps, np.asarray(clip_min).tobytes() if clip_min is not None else None,
           np.asarray(clip_max).tobytes() if clip_max is not None else None)
    cache = getattr(logits_fn, "_scar_selection_cache", None)
    if cache is None:
        cache = {}
        try:
            logits_fn._scar_selection_cache = cache
        except AttributeError:  # callables without a __dict__: no caching
            pass
    if key in cache:
        return cache[key]
    norm = "linf" if attack in ("fgsm", "pgd_linf") else "l2"
    seed_generator = keras.random.SeedGenerator(0)

    @tf.function(reduce_retracing=True)
    def select(batch, eps):
        if attack in ("fgsm", "fgm"):
            return perturbations.prediction_survives(logits_fn, batch, eps, norm=norm,
                                                     clip_min=clip_min, clip_max=clip_max)
        classes = tf.argmax(logits_fn(batch), axis=-1)
        x_adv = perturbations.adversarial_examples(
            logits_fn, batch, classes, eps, attack=attack, clip_min=clip_min, clip_max=clip_max,
            num_steps=num_steps, seed=seed_generator)
        return classes, tf.equal(tf.argmax(logits_fn(x_adv), axis=-1), classes)

    cache[key] = (select, seed_generator)
    return cache[key]


def selection_statistics(y_true, pseudo_labels, survives) -> dict:
    """Counts and the seed's sensitivity (eq. 5) and specificity (eq. 6), in percent
    (None when the denominator is 0)."""
    y_true, pseudo_labels, survives = (np.asarray(a) for a in (y_true, pseudo_labels, survives))
    correct = y_true == pseudo_labels
    selected, rejected = int(survives.sum()), int((~survives).sum())
    selected_correct = int((correct & survives).sum())
    rejected_wrong = int((~correct & ~survives).sum())
    return {
        "num_examples": int(len(survives)), "num_selected": selected, "num_rejected": rejected,
        "sensitivity": 100.0 * selected_correct / selected if selected else None,
        "sensitivity_counts": [selected_correct, selected],
        "specificity": 100.0 * rejected_wrong / rejected if rejected else None,
        "specificity_counts": [rejected_wrong, rejected],
        "pseudo_label_error": 100.0 * float(np.mean(~correct)) if len(correct) else None,
    }


def selection_table(logits_fn, x, y, eps_values, *, attack: str = "fgsm", clip_min=None, clip_max=None,
                    batch_size: int = 500, num_steps: int = 10, seed: int = 0) -> list:
    """The seed's Table 2 for one model: ``selection_statistics`` at every eps (rows)."""
    rows = []
    for eps in eps_values:
        pseudo_labels, survives = robust_selection(logits_fn, x, float(eps), attack=attack, clip_min=clip_min,
                                                   clip_max=clip_max, batch_size=batch_size,
                                                   num_steps=num_steps, seed=seed)
        rows.append({"eps": float(eps), **selection_statistics(y, pseudo_labels, survives)})
    return rows


def format_selection_table(rows: list, name: str) -> str:
    """Markdown like the seed's Table 2: 'name (eps = e) | sens % (a/b) | spec % (c/d)'."""
    def cell(value, counts):
        return "-" if value is None else f"{value:.2f} ({counts[0]}/{counts[1]})"

    lines = ["| model | selected | sensitivity (%) | specificity (%) |", "|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {name} (eps = {row['eps']:g}) | {row['num_selected']}/{row['num_examples']} | "
                     f"{cell(row['sensitivity'], row['sensitivity_counts'])} | "
                     f"{cell(row['specificity'], row['specificity_counts'])} |")
    return "\n".join(lines)


def copy_weights(source: keras.Model, target: keras.Model, workdir: str = "") -> None:
    if len(source.weights) != len(target.weights) or any(
            tuple(s.shape) != tuple(t.shape) for s, t in zip(source.weights, target.weights)):
        raise ConfigError(f"--pretrained_workdir={workdir}: its network does not match this run's "
                          f"(pass the same --network/--mlp_widths/--mlp_batch_norm)")
    for s, t in zip(source.weights, target.weights):
        t.assign(s)


# ----- the method ----------------------------------------------------------------------

class SCAR(SSLModel):
    """Stage 2 of SCAR around the --scar_base method, which owns the losses and the step.

    The base model shares this model's classifier and optimizer; ``pretrained`` is the
    frozen copy f_theta~ used for pseudo-labels and attacks (saved in the checkpoints, so
    a resumed run needs no access to the pretrained directory).
    """

    Params = SCARParams

    def __init__(self, classifier, params=None, **kwargs):
        eval_ema = kwargs.pop("eval_ema", False)
        super().__init__(classifier, params, eval_ema=False, **kwargs)
        params = self.params
        base_cls = get_method(params.scar_base)
        self.base_model = base_cls(classifier, base_cls.Params(**params.base_params), eval_ema=eval_ema, **kwargs)
        self.teacher, self.eval_ema = self.base_model.teacher, self.base_model.eval_ema
        self.loss_names = self.base_model.loss_names
        self.pretrained = keras.models.clone_model(classifier)
        self.pretrained.trainable = False

    # ----- delegation to the base method ------------------------------------------------
    def compile(self, optimizer="rmsprop", **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        self.base_model.compile(optimizer=self.optimizer, **kwargs)

    def train_step(self, data):
        return self.base_model.train_step(data)

    def trainable_for_loss(self):
        return self.base_model.trainable_for_loss()

    def extra_optimizers(self):
        return list(getattr(self.base_model, "extra_optimizers", lambda: [])())

    def call(self, x, training=False):
        return self.base_model(x, training=training)

    def example_views(self, x, indices):
        return self.base_model.example_views(x, indices)

    # ----- stage 1 -> stage 2 --------------------------------------------------------------
    @classmethod
    def validate_config(cls, config):
        workdir = config.method_params["pretrained_workdir"]
        if tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")) is None:
            raise ConfigError(f"--pretrained_workdir={workdir} has no checkpoint")
        pretrained = read_config(workdir)
        differences = [name for name in SHARED_FIELDS if getattr(pretrained, name) != getattr(config, name)]
        if differences:
            theirs = " ".join(f"--{name}={getattr(pretrained, name)}" for name in differences)
            ours = " ".join(f"--{name}={getattr(config, name)}" for name in differences)
            raise ConfigError(f"--pretrained_workdir={workdir} was trained with {theirs}, this run has {ours}; "
                              f"SCAR continues on the same data and network: pass the same flags")

    def initialize_weights(self, config, restore_model):
        """theta_0 = theta~ = the network the pretrained run evaluates (its EMA teacher if it has one)."""
        workdir = self.params.pretrained_workdir
        pretrained_model = restore_model(workdir)[0]
        network = pretrained_model.evaluated_network()
        for target in (self.classifier, self.pretrained, self.teacher):
            if target is not None:
                copy_weights(network, target, workdir)

    # ----- per-epoch selection ---------------------------------------------------------------
    def epoch_steps(self, config, data) -> int:
        return self.params.scar_epoch_steps or max(1, math.ceil(data.num_unlabeled / config.unlabeled_batch_size))

    def _frozen_logits(self, preprocessor):
        """f_theta~ on raw inputs (one callable per preprocessor, so its compiled selection is reused)."""
        if getattr(self, "_frozen_logits_fn", None) is None or self._frozen_logits_fn[0] is not preprocessor:
            fn = lambda x_raw: tf.cast(self.pretrained(preprocessor(x_raw), training=False), tf.float32)
            object.__setattr__(self, "_frozen_logits_fn", (preprocessor, fn))  # not tracked by Keras
        return self._frozen_logits_fn[1]

    def training_data(self, config, data, step):
        epoch_steps = self.epoch_steps(config, data)
        self.data_refresh_steps = epoch_steps
        epoch = step // epoch_steps
        if self.params.scar_relabel and step > 0 and step % epoch_steps == 0:
            copy_weights(self.evaluated_network(), self.pretrained)
        clip_min, clip_max = data_lib.input_bounds(data.spec, data.x_train)
        pseudo_labels, survives = robust_selection(
            self._frozen_logits(data.preprocessor), data.x_train, self.params.scar_eps,
            attack=self.params.scar_attack, clip_min=clip_min, clip_max=clip_max,
            num_steps=self.params.scar_pgd_steps, seed=(config.seed * 100_003 + epoch) % 2 ** 31)
        stats = selection_statistics(data.y_train, pseudo_labels, survives)
        selected = np.flatnonzero(survives)
        labeled = np.union1d(np.asarray(data.labeled_indices, np.int64), selected).astype(np.int64)
        added = np.setdiff1d(selected, data.labeled_indices)
        y_train = np.array(data.y_train, np.int64, copy=True)
        y_train[added] = pseudo_labels[added]
        record = {"epoch": epoch + 1, "step": step, "num_unlabeled": int(data.num_unlabeled),
                  "num_labeled_total": int(len(labeled)), **stats}
        self._write_record(config, data, record)
        if config.verbose:
            sens = "-" if stats["sensitivity"] is None else f"{stats['sensitivity']:.2f}"
            spec = "-" if stats["specificity"] is None else f"{stats['specificity']:.2f}"
            print(f"\nSCAR epoch {epoch + 1} (step {step}): selected {stats['num_selected']} of "
                  f"{data.num_unlabeled} unlabeled examples; sensitivity {sens} %, specificity {spec} %")
        return dataclasses.replace(data, y_train=y_train, labeled_indices=labeled)

    def _write_record(self, config, data, record):
        path = os.path.join(config.workdir, SELECTION_FILE + ".json")
        content = None
        if os.path.exists(path):
            with open(path) as f:
                content = json.load(f)
        if content is None or record["step"] == 0:
            pretrained_metrics = os.path.join(self.params.pretrained_workdir, "metrics.json")
            before = None
            if os.path.exists(pretrained_metrics):
                with open(pretrained_metrics) as f:
                    before = json.load(f).get("test_error")
            content = {"pretrained_workdir": self.params.pretrained_workdir, "pretrained_test_error": before,
                       "scar_base": self.params.scar_base, "attack": self.params.scar_attack,
                       "eps": self.params.scar_eps,
                       "eps_space": data_lib.eps_space_note(data.spec, self.params.scar_attack),
                       "relabel": self.params.scar_relabel, "epochs": []}
        content["epochs"] = [r for r in content["epochs"] if r["epoch"] != record["epoch"]] + [record]
        content["epochs"].sort(key=lambda r: r["epoch"])
        with open(path, "w") as f:
            json.dump(content, f, indent=2)
        columns = ["epoch", "step", "num_selected", "num_unlabeled", "num_labeled_total", "sensitivity",
                   "sensitivity_counts", "specificity", "specificity_counts", "pseudo_label_error"]
        with open(os.path.join(config.workdir, SELECTION_FILE + ".csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for r in content["epochs"]:
                writer.writerow(["/".join(map(str, r[c])) if isinstance(r[c], list) else
                                 (f"{r[c]:.4g}" if isinstance(r[c], float) else r[c]) for c in columns])

    def write_artifacts(self, workdir, data):
        """The base method's files, then the seed's Table 2 for the pretrained model on the test set."""
        self.base_model.write_artifacts(workdir, data)
        if self.params.scar_relabel:  # the frozen copy moved: the table is about the pretrained run
            return
        eps = self.params.scar_eps
        clip_min, clip_max = data_lib.input_bounds(data.spec, data.x_train)
        rows = selection_table(self._frozen_logits(data.preprocessor), data.x_test,
                               data.y_test, [eps / 4, eps / 2, eps, 2 * eps, 4 * eps],
                               attack=self.params.scar_attack, clip_min=clip_min, clip_max=clip_max,
                               num_steps=self.params.scar_pgd_steps)
        with open(os.path.join(workdir, TABLE_FILE + ".json"), "w") as f:
            json.dump({"split": "test", "attack": self.params.scar_attack, "rows": rows}, f, indent=2)
        name = read_config(self.params.pretrained_workdir).method
        with open(os.path.join(workdir, TABLE_FILE + ".md"), "w") as f:
            f.write(f"Selection on the test set by the pretrained {name} model ({self.params.scar_attack}, "
                    f"{data_lib.eps_space_note(data.spec, self.params.scar_attack)})\n\n")
            f.write(format_selection_table(rows, name) + "\n")
