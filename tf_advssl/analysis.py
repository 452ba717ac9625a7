"""Analyses of trained models that are written into run directories.

``interpolation_path_errors``: the analysis of Ma et al. (AdvMixup, WCCI 2020,
"prediction error rates ... along the real-real interpolation paths ... and the
real-adversarial interpolation paths"): for pairs (x_i, x_j) of labeled
examples, the model's error on

    real-real        x_hat = lam x_i + (1 - lam) x_j
    real-adversarial x_hat = lam x_i + (1 - lam) (x_j + r_j)

where r_j is the model's own virtual adversarial direction at x_j (radius
eps).  A point on a path counts as lam * [pred != y_i] + (1 - lam) * [pred != y_j]
(the mixed label), so lam = 1 is the error on x_i and lam = 0 that on x_j
(real-real) or on its adversarial x_j + r_j (real-adversarial).
"""
from __future__ import annotations

import csv

import numpy as np
import tensorflow as tf

from tf_advssl import perturbations

DEFAULT_LAMBDAS = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


def interpolation_path_errors(logits_fn, x, y, *, eps: float, xi: float = 1e-6, lambdas=DEFAULT_LAMBDAS,
                              seed: int = 0, batch_size: int = 500, compute_dtype=None) -> dict:
    """Error in percent along real-real and real-adversarial paths, per lam.

    Args:
      logits_fn: model-space inputs -> logits (inference mode).
      x, y: model-space inputs (n, ...) and int labels (n,); pairs are (i, perm(i))
        for a permutation drawn from ``seed``.
      eps, xi: radius and finite-difference step of the VAT direction (``compute_dtype``: the
        network's, see ``perturbations.power_iteration_xi``).
    Returns {"lambda": [...], "real_real": [...], "real_adversarial": [...]}.
    """
    x = tf.cast(x, tf.float32)
    y = np.asarray(y, np.int64)
    n = int(x.shape[0])
    partner = np.random.RandomState(seed).permutation(n)
    real_real = np.zeros(len(lambdas))
    real_adversarial = np.zeros(len(lambdas))
    for start in range(0, n, batch_size):
        batch = slice(start, min(n, start + batch_size))
        x_i = x[batch]
        x_j = tf.gather(x, partner[batch])
        y_i, y_j = y[batch], y[partner[batch]]
        r_j = perturbations.vat_perturbation(logits_fn, x_j, logits_fn(x_j), xi=xi, eps=eps,
                                             seed=seed + start, compute_dtype=compute_dtype)
        for k, lam in enumerate(lambdas):
            for totals, end in ((real_real, x_j), (real_adversarial, x_j + r_j)):
                predicted = np.argmax(logits_fn(perturbations.mixup(x_i, end, lam)).numpy(), axis=-1)
                totals[k] += np.sum(lam * (predicted != y_i) + (1.0 - lam) * (predicted != y_j))
    return {"lambda": [float(lam) for lam in lambdas],
            "real_real": list(100.0 * real_real / n),
            "real_adversarial": list(100.0 * real_adversarial / n)}


def write_table(result: dict, path: str) -> str:
    """The columns of ``result`` as a CSV file (one row per lam)."""
    names = list(result)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        for row in zip(*(result[name] for name in names)):
            writer.writerow([f"{value:.4g}" for value in row])
    return path


def adversarial_views(model, data, count: int = 8, fgsm_fraction: float = 0.1, vat_eps=None):
    """Rows of ``adversarial_grid_figure`` for the first ``count`` training images of a run:
    the originals, the model's VAT perturbation (L2 radius ``vat_eps`` in model space: the
    method's ``vat_eps`` if it has one, else 2.0), FGSM on the true label with an L-inf
    radius of ``fgsm_fraction`` of the pixel range (raw space, clipped), and the method's
    own views (``model.example_views``: xVAT masks, AdvMixup mixtures, generator outputs).
    Returns (rows, predictions), images in model space."""
    indices = np.arange(min(count, len(data.x_train)), dtype=np.int64)
    x_raw = tf.constant(data.x_train[indices], tf.float32)
    y = tf.constant(data.y_train[indices])
    x = data.preprocessor(x_raw)

    def logits(v):
        return tf.cast(model(v, training=False), tf.float32)

    if vat_eps is None:
        vat_eps = getattr(model.params, "vat_eps", 0.0) or 2.0
    x_vat = x + perturbations.vat_perturbation(logits, x, logits(x), xi=0.0, eps=vat_eps,
                                               initial_direction=tf.ones_like(x))
    low, high = data.spec.pixel_range if data.spec.pixel_range is not None else (
        float(data.x_train.min()), float(data.x_train.max()))
    fgsm_eps = fgsm_fraction * (high - low)
    x_fgsm = data.preprocessor(perturbations.adversarial_examples(
        lambda v: logits(data.preprocessor(v)), x_raw, y, fgsm_eps, attack="fgsm",
        clip_min=low, clip_max=high))
    rows = [("original", x), (f"VAT r_vadv\n(L2 {vat_eps:g}, model)", x_vat),
            (f"FGSM\n(L-inf {fgsm_eps:g}, raw)", x_fgsm)]
    rows += [(title, tf.cast(images, tf.float32)) for title, images in
             model.example_views(x, tf.constant(indices)).items()]
    predictions = [None if title.startswith("mask z") else np.argmax(logits(images).numpy(), axis=-1)
                   for title, images in rows]
    return [(title, np.asarray(images)) for title, images in rows], predictions
