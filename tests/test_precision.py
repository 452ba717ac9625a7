"""Mixed precision: perturbation directions agree with float32, training stays finite.

The same weights (same seed, variables are float32 under every policy) and
inputs go through a float32 network and one computing in float16 / bfloat16;
the VAT, FGSM and xVAT perturbation directions must point the same way
(cosine >= 0.9 for every example).  The float16 trap of VAT's finite
difference (x + 1e-6 d rounds back to x) is shown to exist, and to be avoided
by the automatic exact power iteration.
"""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import perturbations, runs, training
from tf_advssl.config import Config
from tf_advssl.methods import get_method, make_params
from tf_advssl.networks import build_network

MIXED = ["mixed_float16", "mixed_bfloat16"]
DIM = 64


def network(policy):
    with runs.precision_policy(policy):
        return build_network("mlp", (DIM,), 4, mlp_widths=(32, 16), mlp_batch_norm=True, dropout=0.0, seed=3)


def inputs(n=16):
    return np.random.RandomState(0).normal(size=(n, DIM)).astype(np.float32)


def cosines(a, b):
    a, b = np.reshape(a, (len(a), -1)), np.reshape(b, (len(b), -1))
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-30)


def vat_direction(model, xi, compute_dtype):
    x = inputs()
    logits_fn = lambda v: model(v, training=True)  # noqa: E731
    start = np.random.RandomState(1).normal(size=x.shape).astype(np.float32)
    return perturbations.vat_perturbation(logits_fn, x, logits_fn(x), xi=xi, eps=1.0, initial_direction=start,
                                          compute_dtype=compute_dtype).numpy()


def test_policy_is_restored_and_logits_are_float32():
    model = network("mixed_float16")
    assert keras.mixed_precision.global_policy().name == "float32"
    assert model.compute_dtype == "float16" and model.layers[1].compute_dtype == "float16"
    assert model(inputs()).dtype == tf.float32
    assert all(v.dtype == "float32" for v in model.weights)


@pytest.mark.parametrize("policy", MIXED)
def test_vat_direction_agrees_with_float32(policy):
    """The float32 reference is the power iteration's exact limit (xi -> 0): the float32
    finite difference with xi = 1e-6 is itself only an estimate of it (on this network its
    per-example cosine with the limit ranges from -0.6 to 1, from float32 round-off in
    logit differences of ~1e-6), so it cannot serve as a per-example reference."""
    reference = vat_direction(network("float32"), 0.0, "float32")
    mixed = network(policy)
    guarded = vat_direction(mixed, 1e-6, mixed.compute_dtype)  # --vat_xi=1e-6: exact iteration automatically
    assert perturbations.power_iteration_xi(1e-6, mixed.compute_dtype) == 0.0
    assert np.min(cosines(reference, guarded)) >= 0.9, cosines(reference, guarded)


def test_unguarded_finite_difference_vanishes_in_float16():
    """The known trap: in float16, x + 1e-6 d == x, so the power iteration's gradient is
    zero and r_vadv carries no direction; the guard above is what avoids it."""
    unguarded = vat_direction(network("mixed_float16"), 1e-6, None)
    reference = vat_direction(network("float32"), 0.0, "float32")
    assert np.mean(np.linalg.norm(unguarded, axis=1) < 1e-3) >= 0.5  # r_vadv = 0 for most examples
    assert np.max(cosines(reference, unguarded)) < 0.9                # and noise for the others


@pytest.mark.parametrize("policy", MIXED)
def test_fgsm_direction_agrees_with_float32(policy):
    x, y = inputs(), np.arange(16) % 4

    def direction(model):
        loss_fn = lambda v: tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(  # noqa: E731
            y, tf.cast(model(v, training=True), tf.float32)))
        return (perturbations.fgsm(loss_fn, x, 0.1) - x).numpy()

    agreement = cosines(direction(network("float32")), direction(network(policy)))
    assert np.min(agreement) >= 0.9, agreement


def xvat_mask_gradient(policy, mode):
    """Gradient of the xVAT divergence with respect to log alpha (the direction log alpha
    ascends), through the method's own losses and its optimizer's loss scaling."""
    params = make_params("xvat", "two_circles", {"x_mode": mode})
    with runs.precision_policy(policy):
        model = get_method("xvat")(network(policy), params, num_classes=4, total_steps=10, num_train_examples=16,
                                   input_shape=(DIM,), seed=5)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_for_loss())
    x = inputs()
    rows = tf.range(16, dtype=tf.int64)
    variables = model.log_alpha_variables()
    with tf.GradientTape() as tape:
        terms = model.compute_losses(x[:4], np.arange(4) % 4, x, rows)
        scaled = model.optimizer.scale_loss(terms["loss_x"])
    gradients = tape.gradient(scaled, variables)
    flat = [tf.convert_to_tensor(g) for g in gradients]
    return np.concatenate([g.numpy().reshape(-1) for g in flat]) / float(model.optimizer.scale_loss(1.0))


@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("mode", ["transductive", "inductive"])
def test_xvat_mask_gradient_agrees_with_float32(policy, mode):
    reference = xvat_mask_gradient("float32", mode)
    mixed = xvat_mask_gradient(policy, mode)
    assert np.all(np.isfinite(mixed)) and np.linalg.norm(reference) > 0
    assert cosines(reference[None], mixed[None])[0] >= 0.9


@pytest.mark.parametrize("policy", MIXED)
def test_vat_training_runs_without_nan_and_restores_policy(tmp_path, policy):
    config = Config(workdir=str(tmp_path), train_steps=20, eval_every=20, checkpoint_every=20, verbose=0,
                    num_train_synthetic=200, num_test_synthetic=100, unlabeled_batch_size=32, mlp_widths=(16, 8),
                    mlp_batch_norm=True, export=False, mixed_precision=policy)
    metrics = training.run(config)
    assert metrics["train_steps"] == 20 and all(np.isfinite(v) for v in metrics["loss_terms"].values())
    assert metrics["loss_terms"]["loss_vat"] > 0  # the exact power iteration found a direction
    assert keras.mixed_precision.global_policy().name == "float32"
    model = runs.restore_model(str(tmp_path))[0]
    assert model.classifier.compute_dtype == policy.split("_")[1]
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (policy == "mixed_float16")
    assert json.loads((tmp_path / "config.json").read_text())["mixed_precision"] == policy
