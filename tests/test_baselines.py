"""Consistency and pseudo-label baselines on tiny linear models, against hand computations.

Losses are recomputed in numpy from the constant weights; gradients that must
skip a target (teacher, ensemble target, sharpened guess, weak-view label) are
checked against a finite-difference gradient of the numpy loss in which that
target is a constant.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl.config import ConfigError
from tf_advssl.layers import BatchNormalization
from tf_advssl.methods import make_params
from tf_advssl.methods.fixmatch import cutout, random_cutout
from tf_advssl.methods.mixmatch import mixup_pairs, sharpen
from tf_advssl.methods.temporal_ensembling import bias_corrected_targets

from linear_models import linear_classifier, make_method, softmax  # noqa: E402

WEIGHTS = np.array([[0.8, -0.4, 0.1], [-0.3, 0.6, 0.2], [0.5, 0.1, -0.7]])
BIAS = np.array([0.1, -0.2, 0.05])


def cross_entropy(labels, logits):
    return -np.log(softmax(logits)[np.arange(len(labels)), labels])


def make(method, overrides=None, classifier=None, lr=1.0, total_steps=100, seed=0, **kwargs):
    """``method`` with its Two Circles params and ``overrides``, around the WEIGHTS/BIAS classifier."""
    return make_method(method, classifier if classifier is not None else linear_classifier(WEIGHTS, BIAS),
                       make_params(method, "two_circles", overrides or {}), lr=lr, total_steps=total_steps,
                       seed=seed, **kwargs)


def data(rng, num_labeled=4, num_unlabeled=6, dim=3, num_classes=3):
    x_l = rng.normal(size=(num_labeled, dim)).astype(np.float32)
    y_l = rng.randint(0, num_classes, size=num_labeled).astype(np.int64)
    x_u = rng.normal(size=(num_unlabeled, dim)).astype(np.float32)
    return (x_l, y_l), (x_u, np.arange(num_unlabeled, dtype=np.int64))


def fixed_views(*views):
    """A stand-in for ``stochastic_view`` returning ``views`` in call order."""
    queue = [np.asarray(v, np.float32) for v in views]
    return lambda x: tf.constant(queue.pop(0))


def only(term, names=("loss_nll", "loss_consistency")):
    return lambda: {name: float(name == term) for name in names}


def numeric_gradient(loss, weights, bias, eps=1e-6):
    """Central differences of loss(weights, bias) in float64."""
    grads = []
    for array in (weights, bias):
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            for sign in (1.0, -1.0):
                shifted = array.copy()
                shifted[index] += sign * eps
                value = loss(shifted, bias) if array is weights else loss(weights, shifted)
                grad[index] += sign * value / (2 * eps)
        grads.append(grad)
    return grads


def assert_sgd_step(model, loss, lr=1.0, atol=2e-5):
    """The classifier moved by exactly -lr * grad of the numpy ``loss`` at WEIGHTS, BIAS."""
    grad_w, grad_b = numeric_gradient(loss, WEIGHTS.astype(np.float64), BIAS.astype(np.float64))
    new_w, new_b = model.classifier.layers[0].get_weights()
    np.testing.assert_allclose(new_w, WEIGHTS - lr * grad_w, atol=atol)
    np.testing.assert_allclose(new_b, BIAS - lr * grad_b, atol=atol)
    assert np.abs(grad_w).max() > 1e-3  # the check is not vacuous


def squared_consistency(p, q):
    return np.mean(np.sum((p - q) ** 2, axis=1)) / p.shape[1]


# ----- Pi-model ----------------------------------------------------------------------

def test_stochastic_view_adds_seeded_gaussian_noise():
    model = make("pi_model", {"input_noise": 0.3}, seed=5)
    x = np.random.RandomState(0).normal(size=(6, 3)).astype(np.float32)
    reference = keras.random.SeedGenerator(0)
    reference.state.assign(model.seed_generator.state.numpy())
    noise = keras.random.normal((6, 3), seed=reference).numpy()
    np.testing.assert_allclose(model.stochastic_view(x).numpy(), x + 0.3 * noise, atol=1e-6)
    again = make("pi_model", {"input_noise": 0.3}, seed=5).stochastic_view(x).numpy()
    other = make("pi_model", {"input_noise": 0.3}, seed=6).stochastic_view(x).numpy()
    np.testing.assert_array_equal(again, x + 0.3 * noise)
    assert not np.allclose(other, again)


@pytest.mark.parametrize("stop_gradient", [False, True])
def test_pi_model_loss_and_gradient_by_hand(stop_gradient):
    rng = np.random.RandomState(1)
    (x_l, y_l), (x_u, idx) = data(rng)
    view_l, view_a, view_b = x_l + 0.1, x_u + rng.normal(size=x_u.shape), x_u + rng.normal(size=x_u.shape)
    model = make("pi_model", {"pi_stop_gradient": stop_gradient}, total_steps=300)
    model.stochastic_view = fixed_views(view_l, view_a, view_b)
    terms = model.compute_losses(x_l, y_l, x_u, idx)
    assert float(terms["loss_nll"]) == pytest.approx(cross_entropy(y_l, view_l @ WEIGHTS + BIAS).mean(), rel=1e-5)
    p_a, p_b = softmax(view_a @ WEIGHTS + BIAS), softmax(view_b @ WEIGHTS + BIAS)
    assert float(terms["loss_consistency"]) == pytest.approx(squared_consistency(p_a, p_b), rel=1e-5)
    # w(0) = w_max exp(-5): the sigmoid ramp-up starts at exp(-5), not 0.
    assert float(model.loss_weights()["loss_consistency"]) == pytest.approx(100.0 * np.exp(-5.0), rel=1e-5)

    model.stochastic_view = fixed_views(view_l, view_a, view_b)
    model.loss_weights = only("loss_consistency")
    model.train_step(((x_l, y_l), (x_u, idx)))
    target_b = p_b
    assert_sgd_step(model, lambda w, b: squared_consistency(
        softmax(view_a @ w + b), target_b if stop_gradient else softmax(view_b @ w + b)))


def test_pi_model_rampup_reaches_w_max():
    model = make("pi_model", total_steps=300)
    model.optimizer.iterations.assign(40)  # 80/300 of 300 steps = 80: halfway
    assert float(model.loss_weights()["loss_consistency"]) == pytest.approx(100.0 * np.exp(-5 * 0.25), rel=1e-5)
    model.optimizer.iterations.assign(80)
    assert float(model.loss_weights()["loss_consistency"]) == pytest.approx(100.0, rel=1e-6)


# ----- Temporal ensembling -----------------------------------------------------------

def test_bias_correction_function_by_hand():
    ensemble = np.array([[0.2, 0.4], [0.0, 0.0], [0.3, 0.3]], np.float32)
    targets, mask = bias_corrected_targets(ensemble, np.array([1.0, 0.0, 3.0]), 0.6)
    np.testing.assert_allclose(targets.numpy(), [[0.2 / 0.4, 0.4 / 0.4], [0, 0], [0.3 / (1 - 0.216)] * 2],
                               rtol=1e-6)
    np.testing.assert_array_equal(mask.numpy(), [1.0, 0.0, 1.0])


def test_temporal_ensembling_targets_over_three_visits_by_hand():
    rng = np.random.RandomState(2)
    (x_l, y_l), (_, _) = data(rng)
    idx = np.array([4, 0, 2], np.int64)
    alpha = 0.6
    model = make("temporal_ensembling", {"te_alpha": alpha}, num_train_examples=6)
    inputs = [rng.normal(size=(3, 3)).astype(np.float32) for _ in range(3)]
    probs = [softmax(x @ WEIGHTS + BIAS) for x in inputs]
    losses = []
    for x_u in inputs:
        model.stochastic_view = fixed_views(x_l, x_u)
        losses.append(float(model.compute_losses(x_l, y_l, x_u, idx)["loss_consistency"]))
    assert losses[0] == 0.0  # no target before the first visit
    # Visit 2: Z = (1 - a) p1, target Z / (1 - a) = p1.
    assert losses[1] == pytest.approx(squared_consistency(probs[1], probs[0]), rel=1e-5)
    # Visit 3: Z = a (1 - a) p1 + (1 - a) p2, target Z / (1 - a^2).
    target = (alpha * (1 - alpha) * probs[0] + (1 - alpha) * probs[1]) / (1 - alpha ** 2)
    assert losses[2] == pytest.approx(squared_consistency(probs[2], target), rel=1e-5)
    table = model.ensemble_predictions.numpy()
    expected = alpha * (alpha * (1 - alpha) * probs[0] + (1 - alpha) * probs[1]) + (1 - alpha) * probs[2]
    np.testing.assert_allclose(table[idx], expected, rtol=1e-5)
    np.testing.assert_array_equal(table[[1, 3, 5]], 0.0)
    np.testing.assert_array_equal(model.ensemble_visits.numpy(), [3, 0, 3, 0, 3, 0])


def test_temporal_ensembling_repeated_index_and_no_gradient_to_target():
    rng = np.random.RandomState(3)
    (x_l, y_l), (_, _) = data(rng)
    x_u = rng.normal(size=(3, 3)).astype(np.float32)
    idx = np.array([1, 1, 3], np.int64)
    alpha = 0.6
    model = make("temporal_ensembling", {"te_alpha": alpha}, num_train_examples=5)
    ensemble = rng.dirichlet(np.ones(3), size=5).astype(np.float32)
    model.ensemble_predictions.assign(ensemble)
    model.ensemble_visits.assign(np.array([2, 2, 0, 2, 0], np.float32))
    model.stochastic_view = fixed_views(x_l, x_u)
    model.loss_weights = only("loss_consistency")
    model.train_step(((x_l, y_l), (x_u, idx)))
    target = ensemble[idx] / (1 - alpha ** 2)
    assert_sgd_step(model, lambda w, b: squared_consistency(softmax(x_u @ w + b), target))
    p = softmax(x_u @ WEIGHTS + BIAS)
    table = model.ensemble_predictions.numpy()
    np.testing.assert_allclose(table[1], alpha * ensemble[1] + (1 - alpha) * p[:2].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(table[3], alpha * ensemble[3] + (1 - alpha) * p[2], rtol=1e-5)
    np.testing.assert_array_equal(model.ensemble_visits.numpy(), [2, 3, 0, 3, 0])


# ----- Mean teacher ------------------------------------------------------------------

def test_mean_teacher_consistency_gradient_skips_teacher_and_teacher_is_ema():
    rng = np.random.RandomState(4)
    (x_l, y_l), (x_u, idx) = data(rng)
    view_s, view_t = x_u + 0.2, x_u - 0.3
    model = make("mean_teacher", total_steps=300)
    teacher_w, teacher_b = WEIGHTS[::-1].copy(), BIAS[::-1].copy()
    model.teacher.layers[0].set_weights([teacher_w.astype(np.float32), teacher_b.astype(np.float32)])
    model.stochastic_view = fixed_views(x_l, view_s, view_t)
    terms = model.compute_losses(x_l, y_l, x_u, idx)
    p_teacher = softmax(view_t @ teacher_w + teacher_b)
    assert float(terms["loss_consistency"]) == pytest.approx(
        squared_consistency(softmax(view_s @ WEIGHTS + BIAS), p_teacher), rel=1e-5)

    model.stochastic_view = fixed_views(x_l, view_s, view_t)
    model.loss_weights = only("loss_consistency")
    model.train_step(((x_l, y_l), (x_u, idx)))
    assert_sgd_step(model, lambda w, b: squared_consistency(softmax(view_s @ w + b), p_teacher))
    decay = min(0.99, 2.0 / 11.0)  # step 1, in the ramp-up: min(0.99, (1 + t) / (10 + t))
    student_w, student_b = model.classifier.layers[0].get_weights()
    new_teacher_w, new_teacher_b = model.teacher.layers[0].get_weights()
    np.testing.assert_allclose(new_teacher_w, decay * teacher_w + (1 - decay) * student_w, atol=1e-6)
    np.testing.assert_allclose(new_teacher_b, decay * teacher_b + (1 - decay) * student_b, atol=1e-6)


def test_mean_teacher_ema_decay_during_and_after_rampup():
    model = make("mean_teacher", total_steps=150000)  # ramp-up: 40000 steps
    model.optimizer.iterations.assign(39999)
    assert float(model.teacher_decay()) == pytest.approx(0.99)
    model.optimizer.iterations.assign(40000)
    assert float(model.teacher_decay()) == pytest.approx(0.999)
    model.optimizer.iterations.assign(3)  # early steps: the (1 + t) / (10 + t) warm-up of the base
    assert float(model.teacher_decay()) == pytest.approx(4.0 / 13.0)


# ----- Pseudo-label ------------------------------------------------------------------

def test_pseudo_label_mask_loss_and_gradient_by_hand():
    rng = np.random.RandomState(5)
    (x_l, y_l), (x_u, idx) = data(rng, num_unlabeled=8)
    x_u = 3.0 * x_u
    model = make("pseudo_label", {"pseudo_label_threshold": 0.8}, total_steps=10)
    p = softmax(x_u @ WEIGHTS + BIAS)
    labels, mask = p.argmax(axis=1), (p.max(axis=1) >= 0.8).astype(np.float64)
    assert 0 < mask.sum() < len(mask)
    terms = model.compute_losses(x_l, y_l, x_u, idx)
    assert float(terms["loss_pseudo_label"]) == pytest.approx(
        np.mean(mask * cross_entropy(labels, x_u @ WEIGHTS + BIAS)), rel=1e-5)
    assert float(model.loss_weights()["loss_pseudo_label"]) == 0.0
    model.optimizer.iterations.assign(2)  # linear warm-up over 0.4 * 10 = 4 steps
    assert float(model.loss_weights()["loss_pseudo_label"]) == pytest.approx(0.5)
    model.optimizer.iterations.assign(0)
    model.loss_weights = only("loss_pseudo_label", ("loss_nll", "loss_pseudo_label"))
    model.train_step(((x_l, y_l), (x_u, idx)))
    assert_sgd_step(model, lambda w, b: np.mean(mask * cross_entropy(labels, x_u @ w + b)))


# ----- MixMatch ----------------------------------------------------------------------

def test_sharpen_by_hand():
    p = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], np.float32)
    np.testing.assert_allclose(sharpen(p, 0.5).numpy(), p ** 2 / (p ** 2).sum(axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(sharpen(p, 1.0).numpy(), p, rtol=1e-5)
    assert sharpen(p, 0.01).numpy()[0, 2] > 0.999


def test_mixup_pairs_uses_the_larger_coefficient_by_hand():
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    targets = np.eye(4, 3, dtype=np.float32)
    permutation = np.array([2, 0, 3, 1])
    lam = np.array([0.3, 0.9, 0.5, 0.1], np.float32)
    kept = np.array([0.7, 0.9, 0.5, 0.9], np.float32)[:, None]
    x_mixed, targets_mixed = mixup_pairs(x, targets, permutation, lam)
    np.testing.assert_allclose(x_mixed.numpy(), kept * x + (1 - kept) * x[permutation], rtol=1e-6)
    np.testing.assert_allclose(targets_mixed.numpy(), kept * targets + (1 - kept) * targets[permutation],
                               rtol=1e-6)


def mixmatch_case(rng):
    (x_l, y_l), (x_u, idx) = data(rng, num_labeled=2, num_unlabeled=3)
    offsets = [np.zeros_like(x_l), 0.5 * np.ones_like(x_u), -0.5 * np.ones_like(x_u)]
    permutation = np.array([4, 6, 0, 7, 1, 3, 5, 2])
    lam = np.array([0.2, 0.7, 0.45, 0.9, 0.05, 0.6, 0.3, 0.85], np.float32)
    return (x_l, y_l, x_u, idx), offsets, permutation, lam


def mixmatch_model(offsets, permutation, lam, **kwargs):
    model = make("mixmatch", {"mixmatch_temperature": 0.5, "mixmatch_k": 2}, **kwargs)
    queue = list(offsets)
    model.augmentation = lambda x, training: x + queue.pop(0)  # labeled, then the K unlabeled views
    model.mixup_draws = lambda n: (tf.constant(permutation), tf.constant(lam))
    return model


def mixmatch_by_hand(x_l, y_l, x_u, offsets, permutation, lam, weights, bias, guess=None):
    views = [x_u + offsets[1], x_u + offsets[2]]
    if guess is None:
        mean = (softmax(views[0] @ WEIGHTS + BIAS) + softmax(views[1] @ WEIGHTS + BIAS)) / 2
        guess = mean ** 2 / (mean ** 2).sum(axis=1, keepdims=True)
    x_all = np.concatenate([x_l + offsets[0]] + views)
    p_all = np.concatenate([np.eye(3)[y_l], guess, guess])
    kept = np.maximum(lam, 1 - lam)[:, None]
    x_mixed = kept * x_all + (1 - kept) * x_all[permutation]
    p_mixed = kept * p_all + (1 - kept) * p_all[permutation]
    logits = x_mixed @ weights + bias
    log_q = np.log(softmax(logits))
    loss_x = -np.mean(np.sum(p_mixed[:2] * log_q[:2], axis=1))
    loss_u = squared_consistency(softmax(logits[2:]), p_mixed[2:])
    return loss_x, loss_u, guess


def test_mixmatch_loss_by_hand_and_guesses_get_no_gradient():
    rng = np.random.RandomState(6)
    (x_l, y_l, x_u, idx), offsets, permutation, lam = mixmatch_case(rng)
    model = mixmatch_model(offsets, permutation, lam)
    terms = model.compute_losses(x_l, y_l, x_u, idx)
    loss_x, loss_u, guess = mixmatch_by_hand(x_l, y_l, x_u, offsets, permutation, lam, WEIGHTS, BIAS)
    assert float(terms["loss_nll"]) == pytest.approx(loss_x, rel=1e-5)
    assert float(terms["loss_consistency"]) == pytest.approx(loss_u, rel=1e-5)

    model = mixmatch_model(offsets, permutation, lam)
    model.loss_weights = only("loss_consistency")
    model.train_step(((x_l, y_l), (x_u, idx)))
    assert_sgd_step(model, lambda w, b: mixmatch_by_hand(x_l, y_l, x_u, offsets, permutation, lam, w, b,
                                                         guess=guess)[1])


def test_mixmatch_draws_are_seeded():
    draws = [make("mixmatch", seed=seed).mixup_draws(8) for seed in (3, 3, 4)]
    np.testing.assert_array_equal(draws[0][0].numpy(), draws[1][0].numpy())
    np.testing.assert_array_equal(draws[0][1].numpy(), draws[1][1].numpy())
    assert not np.array_equal(draws[0][1].numpy(), draws[2][1].numpy())
    assert sorted(draws[0][0].numpy()) == list(range(8))
    assert np.all((draws[0][1].numpy() >= 0) & (draws[0][1].numpy() <= 1))


# ----- FixMatch ----------------------------------------------------------------------

def test_cutout_by_hand():
    images = np.ones((2, 5, 5, 1), np.float32)
    out = cutout(images, sizes=np.array([3.0, 2.0]), centers=np.array([[2.0, 2.0], [0.0, 4.0]]),
                 fill_value=0.5).numpy()[..., 0]
    expected = np.ones((2, 5, 5), np.float32)
    expected[0, 1:4, 1:4] = 0.5   # |row - 2| < 1.5 and |col - 2| < 1.5
    expected[1, 0:1, 4:5] = 0.5   # |row - 0| < 1 and |col - 4| < 1
    np.testing.assert_array_equal(out, expected)


def test_random_cutout_is_seeded_and_bounded():
    images = np.ones((16, 8, 8, 1), np.float32)
    outs = [random_cutout(images, 0.5, 0.0, keras.random.SeedGenerator(seed)).numpy() for seed in (1, 1, 2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    for image in outs[0][..., 0]:
        rows, cols = np.nonzero(image == 0.0)
        if len(rows):
            assert rows.max() - rows.min() < 4 and cols.max() - cols.min() < 4  # side <= 0.5 * 8
            assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a rectangle


def test_fixmatch_mask_loss_and_gradient_by_hand():
    rng = np.random.RandomState(7)
    (x_l, y_l), (x_u, idx) = data(rng, num_unlabeled=8)
    x_u = 3.0 * x_u
    x_strong = x_u + rng.normal(size=x_u.shape).astype(np.float32)
    model = make("fixmatch", {"fixmatch_threshold": 0.8})
    model.strong_augment = lambda x: tf.constant(x_strong)
    p_weak = softmax(x_u @ WEIGHTS + BIAS)
    labels, mask = p_weak.argmax(axis=1), (p_weak.max(axis=1) >= 0.8).astype(np.float64)
    assert 0 < mask.sum() < len(mask)
    terms = model.compute_losses(x_l, y_l, x_u, idx)
    assert float(terms["loss_pseudo_label"]) == pytest.approx(
        np.mean(mask * cross_entropy(labels, x_strong @ WEIGHTS + BIAS)), rel=1e-5)
    assert float(terms["loss_nll"]) == pytest.approx(cross_entropy(y_l, x_l @ WEIGHTS + BIAS).mean(), rel=1e-5)
    model.loss_weights = only("loss_pseudo_label", ("loss_nll", "loss_pseudo_label"))
    model.train_step(((x_l, y_l), (x_u, idx)))
    assert_sgd_step(model, lambda w, b: np.mean(mask * cross_entropy(labels, x_strong @ w + b)))


def test_fixmatch_strong_augmentation_of_vectors_is_seeded_noise():
    model = make("fixmatch", {"fixmatch_vector_noise": 0.2}, seed=3)
    x = np.random.RandomState(8).normal(size=(5, 3)).astype(np.float32)
    reference = keras.random.SeedGenerator(0)
    reference.state.assign(model.seed_generator.state.numpy())
    expected = x + 0.2 * keras.random.normal((5, 3), seed=reference).numpy()
    np.testing.assert_allclose(model.strong_augment(x).numpy(), expected, atol=1e-6)


def image_classifier(shape=(8, 8, 1), num_classes=3):
    return keras.Sequential([keras.Input(shape), keras.layers.Flatten(),
                             keras.layers.Dense(num_classes, kernel_initializer="ones")])


def test_fixmatch_strong_augmentation_of_images_is_seeded_and_in_range():
    x = np.random.RandomState(9).uniform(size=(6, 8, 8, 1)).astype(np.float32)
    outs = [make("fixmatch", classifier=image_classifier(), seed=seed, input_shape=(8, 8, 1)).strong_augment(x)
            .numpy() for seed in (1, 1, 2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    assert outs[0].min() >= 0.0 and outs[0].max() <= 1.0
    assert np.mean(outs[0] == 0.5) > 0  # the cutout squares
    assert not np.allclose(outs[0], x)


# ----- all baselines -----------------------------------------------------------------

BASELINES = ["pi_model", "temporal_ensembling", "mean_teacher", "pseudo_label", "mixmatch", "fixmatch"]


def bn_classifier(seed):
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, kernel_initializer=init),
                             BatchNormalization(), keras.layers.ReLU(),
                             keras.layers.Dense(3, kernel_initializer=init)])


@pytest.mark.parametrize("method", BASELINES)
def test_compiled_step_is_finite_and_seeded(method):
    """Two steps compiled, then eagerly with the same seed (same result) and another seed."""
    batch = data(np.random.RandomState(10), num_labeled=4, num_unlabeled=8)
    runs = []
    for seed, compiled in ((0, True), (0, False), (1, False)):
        model = make(method, {"pseudo_label_threshold": 0.0, "fixmatch_threshold": 0.0}, bn_classifier(0),
                     lr=0.1, seed=seed, num_train_examples=8)
        step = tf.function(model.train_step) if compiled else model.train_step
        logs = [step(batch) for _ in range(2)][-1]
        assert all(np.isfinite(float(v)) for v in logs.values())
        assert set(logs) == set(model.loss_names) | {"loss"}
        runs.append([v.numpy() for v in model.classifier.weights])
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_allclose(a, b, atol=1e-6)
    if method != "pseudo_label":  # the only baseline without random draws
        assert any(not np.allclose(a, b, atol=1e-4) for a, b in zip(runs[1], runs[2]))


JOINT_BATCH_METHODS = ["pi_model", "temporal_ensembling", "mean_teacher", "pseudo_label"]


def test_joint_logits_is_one_pass_over_the_concatenation_by_hand():
    """Batch statistics over all rows, split back in order; the moving mean moves once."""
    rng = np.random.RandomState(11)
    (x_l, _), (x_u, _) = data(rng, num_labeled=3, num_unlabeled=5)
    classifier = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, use_bias=False,
                                   kernel_initializer=keras.initializers.Constant(WEIGHTS)),
                                   BatchNormalization(momentum=0.9, epsilon=1e-3)])
    model = make("pseudo_label", classifier=classifier)
    logits_l, logits_u = model.joint_logits(x_l, x_u)
    h = np.concatenate([x_l, x_u]) @ WEIGHTS
    normalised = (h - h.mean(axis=0)) / np.sqrt(h.var(axis=0) + 1e-3)
    np.testing.assert_allclose(logits_l.numpy(), normalised[:3], atol=1e-5)
    np.testing.assert_allclose(logits_u.numpy(), normalised[3:], atol=1e-5)
    np.testing.assert_allclose(classifier.layers[-1].moving_mean.numpy(), 0.1 * h.mean(axis=0), atol=1e-6)


@pytest.mark.parametrize("method", JOINT_BATCH_METHODS)
@pytest.mark.parametrize("joint_batch", [True, False])
def test_joint_batch_normalises_labeled_rows_with_the_unlabeled_rows(method, joint_batch):
    """With batch norm, the labeled NLL depends on the unlabeled batch only in the joint pass;
    the moving mean then moves once with the labeled and the student's unlabeled rows together."""
    rng = np.random.RandomState(12)
    (x_l, y_l), (x_u, idx_u) = data(rng, num_labeled=4, num_unlabeled=6)
    nll = []
    for shift in (0.0, 3.0):
        model = make(method, {"joint_batch": joint_batch, "input_noise": 0.0}, bn_classifier(0),
                     num_train_examples=6)
        bn, dense = model.classifier.layers[1], model.classifier.layers[0]
        if joint_batch:  # one update (momentum 0.99) with the mean over all rows
            expected = 0.01 * dense(np.concatenate([x_l, x_u + shift])).numpy().mean(axis=0)
        else:  # the labeled pass, then the student's unlabeled pass
            expected = (0.99 * 0.01 * dense(x_l).numpy().mean(axis=0)
                        + 0.01 * dense(x_u + shift).numpy().mean(axis=0))
        nll.append(float(model.compute_losses(x_l, y_l, x_u + shift, idx_u)["loss_nll"]))
        np.testing.assert_allclose(bn.moving_mean.numpy(), expected, atol=1e-6)
    if joint_batch:
        assert abs(nll[0] - nll[1]) > 1e-3
    else:
        assert nll[0] == pytest.approx(nll[1], rel=1e-6)


@pytest.mark.parametrize("method, overrides, flag", [
    ("temporal_ensembling", {"te_alpha": 1.0}, "--te_alpha"),
    ("mean_teacher", {"mt_rampup_ema_decay": 1.5}, "--mt_rampup_ema_decay"),
    ("pseudo_label", {"pseudo_label_threshold": 2.0}, "--pseudo_label_threshold"),
    ("mixmatch", {"mixmatch_temperature": 0.0}, "--mixmatch_temperature"),
    ("fixmatch", {"fixmatch_value_max": -1.0}, "--fixmatch_value_max"),
    ("pi_model", {"input_noise": -0.1}, "--input_noise"),
])
def test_bad_parameters_name_the_flag(method, overrides, flag):
    with pytest.raises(ConfigError, match=flag):
        make_params(method, "mnist", overrides)
