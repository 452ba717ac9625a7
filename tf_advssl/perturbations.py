"""Adversarial perturbations as plain functions, shared by training and attacks.

All functions take ``x`` in model space and a callable; they compute in
float32 whatever the network's precision, and return tensors shaped like ``x``.

* ``vat_perturbation``: Miyato et al. (TPAMI 2018), one or more power
  iterations  d <- grad_d KL(p(.|x) || p(.|x + xi d)),  r_vadv = eps d/||d||_2.
* ``fgsm`` (L-inf, Goodfellow et al. 2015): x + eps sign(grad_x L).
* ``fgm`` (L2, Miyato et al. 2017): x + eps grad_x L / ||grad_x L||_2.
* ``pgd``: iterated steps of either, projected onto the eps-ball (Madry et al. 2018).
* ``adversarial_examples``: any of these as an (un)targeted attack with clipping to
  the valid input range (``attack_loss``: the cross-entropy an attack ascends).
* ``prediction_survives``: does the predicted class survive an FGSM/FGM step (SCAR).
* ``hard_concrete_mask``: multiplicative masks z in [0, 1] of xAT / xVAT
  (Hard Concrete, Louizos et al. 2018), with ``hard_concrete_nonzero_probability``
  for their expected L0 norm.
* ``sample_beta`` / ``mixup``: the interpolations of ICT and AdvMixup.
"""
from __future__ import annotations

import math
from typing import Callable

import tensorflow as tf

from tf_advssl import losses
from tf_advssl.config import ATTACKS, NORMS  # noqa: F401 (perturbations.ATTACKS: the attacks defined here)
from tf_advssl.layers import frozen_batch_stats



def _feature_axes(x):
    return list(range(1, len(x.shape)))


def l2_normalize(d):
    """Per-example unit L2 vector, scaled first by the max-abs entry for stability
    (as the official VAT code).  Zero rows stay (numerically) zero."""
    d = tf.cast(d, tf.float32)
    axes = _feature_axes(d)
    d = d / (1e-12 + tf.reduce_max(tf.abs(d), axis=axes, keepdims=True))
    return d / tf.sqrt(1e-6 + tf.reduce_sum(tf.square(d), axis=axes, keepdims=True))


def unit_direction(gradient, norm: str):
    """The steepest-ascent direction of unit ``norm`` for a given gradient."""
    if norm == "linf":
        return tf.sign(tf.cast(gradient, tf.float32))
    if norm == "l2":
        return l2_normalize(gradient)
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


def input_gradient(loss_fn: Callable, x):
    """grad_x of the scalar ``loss_fn(x)``, in float32; BN statistics are not updated."""
    x = tf.cast(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        with frozen_batch_stats():
            loss = tf.cast(loss_fn(x), tf.float32)
    return tf.stop_gradient(tape.gradient(loss, x))


LOW_PRECISION_DTYPES = ("float16", "bfloat16")


def power_iteration_xi(xi: float, compute_dtype=None) -> float:
    """The finite-difference radius VAT can use with a network computing in ``compute_dtype``:
    ``xi`` in float32, 0 (the exact product, ``gauss_newton_product``) in float16 / bfloat16,
    where x + xi d rounds back to x (xi = 1e-6 is below their resolution of ~1e-3 / ~1e-2
    at |x| ~ 1) and the finite-difference gradient is zero or noise."""
    if compute_dtype is not None and tf.as_dtype(compute_dtype).name in LOW_PRECISION_DTYPES:
        return 0.0
    return float(xi)


def vat_perturbation(logits_fn: Callable, x, logits_clean, *, xi: float, eps,
                     num_power_iterations: int = 1, seed=None, initial_direction=None, compute_dtype=None):
    """Virtual adversarial perturbation r_vadv, shape of ``x``.

    Args:
      logits_fn: x -> logits (the classifier in training mode).
      x: inputs (batch, ...), model space.
      logits_clean: logits on ``x``; treated as a constant target.
      xi: finite-difference radius of the power iteration (official default 1e-6);
        0 means the exact limit xi -> 0 (``gauss_newton_product``), which does not
        depend on the precision of x + xi d (float16 rounds 1e-6 away).
      eps: L2 radius of the perturbation (scalar or per-example (batch, 1, ...)).
      num_power_iterations: power iterations (1 in the paper).
      seed: seed for the random start (a keras SeedGenerator or int).
      initial_direction: optional start direction instead of a random one.
      compute_dtype: the network's compute dtype (e.g. ``model.compute_dtype``); under
        float16 / bfloat16 the power iteration uses the exact product whatever ``xi``
        (``power_iteration_xi``).  None: as float32.
    """
    xi = power_iteration_xi(xi, compute_dtype)
    x = tf.cast(x, tf.float32)
    logits_clean = tf.stop_gradient(tf.cast(logits_clean, tf.float32))
    if initial_direction is None:
        import keras  # local: keeps this module importable without Keras side effects
        d = keras.random.normal(tf.shape(x), seed=seed)
    else:
        d = tf.cast(initial_direction, tf.float32)
    for _ in range(num_power_iterations):
        if xi > 0:
            d = xi * l2_normalize(d)
            d = input_gradient(
                lambda d_: tf.reduce_sum(losses.kl_divergence(logits_clean, logits_fn(x + d_))), d)
            # Each example's gradient is H_n xi d_n: one power-iteration step per example.
        else:
            d = gauss_newton_product(logits_fn, x, logits_clean, l2_normalize(d))
    return tf.stop_gradient(eps * l2_normalize(d))


def gauss_newton_product(logits_fn: Callable, x, logits_clean, d):
    """H d for H = J^T (diag(p) - p p^T) J, the Hessian of KL(p(.|x) || p(.|x + r)) at r = 0
    (J: Jacobian of the logits in x, p: the clean prediction); the xi -> 0 limit of the
    finite-difference power iteration, exact in any precision.

    One forward pass carrying the tangent d (forward-mode J d) and one backward pass
    (J^T v); BN statistics are not updated.  v is scaled to a max-abs entry of 1 before
    the backward pass (and the result scaled back in float32), so that a float16
    network's backward pass neither underflows nor overflows; one scale for the whole
    batch, since batch statistics couple the examples.
    """
    x = tf.cast(x, tf.float32)
    p = tf.nn.softmax(tf.stop_gradient(tf.cast(logits_clean, tf.float32)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        with tf.autodiff.ForwardAccumulator(primals=x, tangents=tf.cast(d, tf.float32)) as accumulator:
            with frozen_batch_stats():
                logits = logits_fn(x)
        jd = tf.cast(accumulator.jvp(logits), tf.float32)
    v = p * jd - p * tf.reduce_sum(p * jd, axis=-1, keepdims=True)
    scale = tf.reduce_max(tf.abs(v)) + 1e-30
    hd = tf.cast(tape.gradient(logits, x, output_gradients=tf.cast(v / scale, logits.dtype)), tf.float32)
    return tf.stop_gradient(hd * scale)


def gradient_step(loss_fn: Callable, x, eps, norm: str):
    """One signed/normalised gradient step of size ``eps``: FGSM (linf) or FGM (l2)."""
    return tf.cast(x, tf.float32) + eps * unit_direction(input_gradient(loss_fn, x), norm)


def fgsm(loss_fn: Callable, x, eps):
    """Fast gradient sign method (L-inf): x + eps * sign(grad_x loss_fn(x))."""
    return gradient_step(loss_fn, x, eps, "linf")


def fgm(loss_fn: Callable, x, eps):
    """Fast gradient method (L2): x + eps * grad / ||grad||_2."""
    return gradient_step(loss_fn, x, eps, "l2")


def prediction_survives(logits_fn: Callable, x, eps, *, norm: str = "linf", clip_min=None, clip_max=None):
    """The SCAR criterion (Yang, Kim, Kim, Algorithm 1): the predicted class of each
    example and whether it survives one gradient step of size ``eps`` (FGSM for
    ``linf``, FGM for ``l2``) that raises the cross-entropy of that class.

    Returns ``(classes, survives)``: int64 (batch,) and bool (batch,).
    """
    x = tf.cast(x, tf.float32)
    classes = tf.argmax(logits_fn(x), axis=-1)
    x_adv = gradient_step(
        lambda v: tf.reduce_sum(losses.cross_entropy(classes, logits_fn(v))), x, eps, norm)
    x_adv = _clip(x_adv, clip_min, clip_max)
    return classes, tf.equal(tf.argmax(logits_fn(x_adv), axis=-1), classes)




def attack_loss(logits_fn: Callable, labels, *, targeted: bool = False):
    """The scalar an attack ascends, as a function of x.

    Untargeted: the summed cross-entropy of ``labels`` (true or predicted
    classes).  Targeted: minus the summed cross-entropy of ``labels`` (the
    target classes), so that ascending it moves x toward the target.
    """
    sign = -1.0 if targeted else 1.0
    return lambda v: sign * tf.reduce_sum(losses.cross_entropy(labels, logits_fn(v)))


def adversarial_examples(logits_fn: Callable, x, labels, eps, *, attack: str, targeted: bool = False,
                         clip_min=None, clip_max=None, num_steps: int = 10, step_size=None,
                         random_start: bool = True, seed=None):
    """Adversarial examples of ``x`` within the ``eps`` ball, clipped to [clip_min, clip_max].

    Args:
      logits_fn: x -> logits (inference mode), in the space of ``x``.
      x: inputs (batch, ...); ``eps``, ``step_size`` and the clip bounds are in the same space.
      labels: int (batch,): classes whose loss is raised (untargeted) or targets (``targeted``).
      attack: "fgsm" (one L-inf step), "fgm" (one L2 step), "pgd_linf" or "pgd_l2"
        (``num_steps`` steps of ``step_size``, default 2.5 eps / num_steps, projected onto
        the ball; ``random_start`` draws the start uniformly in the L-inf ball or in the L2
        ball's radius, from ``seed``).
    Returns float32 tensor shaped like ``x``.
    """
    loss_fn = attack_loss(logits_fn, labels, targeted=targeted)
    if attack in ("fgsm", "fgm"):
        return tf.stop_gradient(_clip(gradient_step(loss_fn, x, eps, "linf" if attack == "fgsm" else "l2"),
                                      clip_min, clip_max))
    if attack in ("pgd_linf", "pgd_l2"):
        if step_size is None:
            step_size = 2.5 * eps / max(1, num_steps)
        return pgd(loss_fn, x, eps, norm=attack[len("pgd_"):], step_size=step_size, num_steps=num_steps,
                   random_start=random_start, seed=seed, clip_min=clip_min, clip_max=clip_max)
    raise ValueError(f"attack must be one of {ATTACKS}, got {attack!r}")


def project(delta, eps, norm: str):
    """Project perturbations onto the ``norm`` ball of radius eps."""
    if norm == "linf":
        return tf.clip_by_value(delta, -eps, eps)
    axes = _feature_axes(delta)
    norms = tf.sqrt(tf.reduce_sum(tf.square(delta), axis=axes, keepdims=True) + 1e-12)
    return delta * tf.minimum(1.0, eps / norms)


def pgd(loss_fn: Callable, x, eps, *, norm: str, step_size, num_steps: int,
        random_start: bool = True, seed=None, clip_min=None, clip_max=None):
    """Projected gradient ascent on ``loss_fn`` within the ``norm`` ball of radius eps.

    ``clip_min``/``clip_max`` (in the same space as x) keep x + delta valid.
    For a targeted attack pass a ``loss_fn`` that is minus the target's loss.
    """
    import keras

    x = tf.cast(x, tf.float32)
    if random_start:
        if norm == "linf":
            delta = keras.random.uniform(tf.shape(x), -1.0, 1.0, seed=seed) * eps
        else:
            direction = l2_normalize(keras.random.normal(tf.shape(x), seed=seed))
            radius = keras.random.uniform(tf.concat([tf.shape(x)[:1], tf.ones_like(tf.shape(x)[1:])], 0),
                                          0.0, 1.0, seed=seed)
            delta = direction * radius * eps
    else:
        delta = tf.zeros_like(x)
    for _ in range(num_steps):
        x_adv = _clip(x + delta, clip_min, clip_max)
        x_next = gradient_step(loss_fn, x_adv, step_size, norm)
        delta = project(x_next - x, eps, norm)
    return tf.stop_gradient(_clip(x + delta, clip_min, clip_max))


def _clip(x, clip_min, clip_max):
    if clip_min is None and clip_max is None:
        return x
    return tf.clip_by_value(x, clip_min, clip_max)


# ----- multiplicative (Hard Concrete) masks: xAT / xVAT ----------------------------

def hard_concrete_mask(log_alpha, *, beta: float, gamma: float, zeta: float, seed=None, uniform=None):
    """A Hard Concrete sample z in [0, 1], shape of ``log_alpha`` (Louizos et al., ICLR 2018).

        s = sigmoid((log u - log(1 - u) + log_alpha) / beta),  u ~ U(0, 1)
        z = min(1, max(0, s (zeta - gamma) + gamma))

    With gamma < 0 < 1 < zeta, z is exactly 0 with probability
    sigmoid(beta log(-gamma/zeta) - log_alpha) and exactly 1 with probability
    sigmoid(log_alpha - beta log((1 - gamma)/(zeta - 1))); in between it is
    differentiable in log_alpha (reparameterisation through u).

    Args:
      log_alpha: location parameters, any shape, float.
      beta, gamma, zeta: temperature and stretch interval (2/3, -0.1, 1.1 in the paper).
      seed: keras SeedGenerator or int for u; ignored when ``uniform`` is given.
      uniform: optional u of the shape of ``log_alpha`` (tests).
    """
    import keras

    log_alpha = tf.cast(log_alpha, tf.float32)
    if uniform is None:
        uniform = keras.random.uniform(tf.shape(log_alpha), seed=seed)
    uniform = tf.clip_by_value(tf.cast(uniform, tf.float32), 1e-7, 1.0 - 1e-7)
    logistic = tf.math.log(uniform) - tf.math.log1p(-uniform)
    stretched = tf.sigmoid((logistic + log_alpha) / beta) * (zeta - gamma) + gamma
    return tf.clip_by_value(stretched, 0.0, 1.0)


def apply_mask(x, z, center: float = 0.0):
    """The multiplicative perturbation ``center + (x - center) * z``: a zero entry of z moves
    x to ``center`` instead of 0 (``center`` 0 is the paper's x * z; 0.5 on [0, 1] pixels is
    the xVAT reference code's x * z on MNIST centred to [-0.5, 0.5])."""
    x = tf.cast(x, tf.float32)
    return center + (x - center) * tf.cast(z, tf.float32)


def hard_concrete_nonzero_probability(log_alpha, *, beta: float, gamma: float, zeta: float):
    """P(z != 0) = sigmoid(log_alpha - beta log(-gamma/zeta)), elementwise: the
    expected L0 norm of a Hard Concrete mask is the sum of this over entries."""
    return tf.sigmoid(tf.cast(log_alpha, tf.float32) - beta * math.log(-gamma / zeta))


# ----- mixup: AdvMixup / ICT ------------------------------------------------------

def sample_beta(alpha: float, seed=None, shape=()):
    """lambda ~ Beta(alpha, alpha) as the ratio g1 / (g1 + g2) of Gamma(alpha) draws."""
    import keras

    g1 = keras.random.gamma(shape, alpha, seed=seed)
    g2 = keras.random.gamma(shape, alpha, seed=seed)
    return tf.cast(g1 / (g1 + g2), tf.float32)


def mixup(a, b, lam):
    """lam * a + (1 - lam) * b, in float32 (``lam`` scalar or broadcastable)."""
    lam = tf.cast(lam, tf.float32)
    return lam * tf.cast(a, tf.float32) + (1.0 - lam) * tf.cast(b, tf.float32)
