"""Adversarial directions against their closed forms on linear softmax models."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import perturbations


def linear_model(weights, bias):
    model = keras.Sequential([keras.Input((weights.shape[0],)), keras.layers.Dense(weights.shape[1])])
    model.layers[0].set_weights([weights.astype(np.float32), bias.astype(np.float32)])
    return model


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def top_eigenvector(weights, bias, x):
    """Top eigenvector of W (diag(p) - p p^T) W^T: the Hessian of KL(p(x) || p(x + r)) at r = 0."""
    p = softmax(x @ weights + bias)
    hessian = weights @ (np.diag(p) - np.outer(p, p)) @ weights.T
    values, vectors = np.linalg.eigh(hessian)
    return vectors[:, -1], values


def cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("xi", [1e-3, 0.0])
@pytest.mark.parametrize("num_classes,iterations", [(2, 1), (4, 40)])
def test_vat_direction_is_top_eigenvector(num_classes, iterations, xi):
    rng = np.random.RandomState(0)
    dim = 6
    weights, bias = rng.normal(size=(dim, num_classes)), rng.normal(size=num_classes)
    x = rng.normal(size=(3, dim)).astype(np.float32)
    model = linear_model(weights, bias)
    r_adv = perturbations.vat_perturbation(
        lambda v: model(v), x, model(x), xi=xi, eps=2.0, num_power_iterations=iterations,
        seed=keras.random.SeedGenerator(1)).numpy()
    for n in range(len(x)):
        expected, values = top_eigenvector(weights, bias, x[n])
        if num_classes == 2:  # rank-one Hessian: one iteration is exact
            assert values[-2] < 1e-6 * values[-1]
        assert abs(cosine(r_adv[n], expected)) > 0.999
        assert np.linalg.norm(r_adv[n]) == pytest.approx(2.0, rel=1e-3)


def test_exact_vat_step_on_pixel_scale_inputs_where_xi_1e6_is_lost_to_rounding():
    """MNIST-like inputs (784 features in [0, 1], 12 % zeros), one power iteration as in
    the paper: ``xi = 0`` (the exact limit) gives the closed-form step ``H d``; the
    official xi = 1e-6 does not in float32 (x + 1e-6 d/||d|| moves each feature by
    ~4e-8, below the 6e-8 spacing of float32 at 0.5; docs/methods.md)."""
    rng = np.random.RandomState(2)
    dim, num_classes = 784, 10
    weights, bias = rng.normal(scale=0.1, size=(dim, num_classes)), rng.normal(size=num_classes)
    x = rng.uniform(size=(8, dim)).astype(np.float32)
    x[x < 0.12] = 0.0
    model = linear_model(weights, bias)
    start = rng.normal(size=x.shape)
    p = softmax(x.astype(np.float64) @ weights + bias)
    # One power-iteration step from `start`: H d = W (diag(p) - p p^T) W^T d.
    expected = [weights @ ((np.diag(p[n]) - np.outer(p[n], p[n])) @ (weights.T @ start[n]))
                for n in range(len(x))]

    def cosines(xi):
        r_adv = perturbations.vat_perturbation(lambda v: model(v), x, model(x), xi=xi, eps=1.0,
                                               initial_direction=start.astype(np.float32)).numpy()
        return np.array([cosine(r_adv[n], expected[n]) for n in range(len(x))])

    assert cosines(0.0).min() > 0.99
    assert np.median(cosines(1e-6)) < 0.9, cosines(1e-6)


def _cross_entropy_gradient(weights, bias, x, y):
    p = softmax(x @ weights + bias)
    onehot = np.eye(weights.shape[1])[y]
    return (p - onehot) @ weights.T  # d/dx sum_n CE_n


def test_fgsm_and_fgm_match_hand_worked_linear_case():
    rng = np.random.RandomState(2)
    weights, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    model = linear_model(weights, bias)
    loss_fn = lambda v: tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(v)))
    grad = _cross_entropy_gradient(weights, bias, x, y)
    np.testing.assert_allclose(perturbations.fgsm(loss_fn, x, 0.3).numpy(), x + 0.3 * np.sign(grad), atol=1e-6)
    expected_fgm = x + 0.5 * grad / np.linalg.norm(grad, axis=1, keepdims=True)
    np.testing.assert_allclose(perturbations.fgm(loss_fn, x, 0.5).numpy(), expected_fgm, atol=1e-5)


def test_pgd_on_two_class_linear_model_equals_fgsm_corner():
    """With two classes the CE gradient's sign never changes, so L-inf PGD ends at the FGSM corner."""
    rng = np.random.RandomState(3)
    weights, bias = rng.normal(size=(4, 2)), rng.normal(size=2)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    y = rng.randint(0, 2, size=6)
    model = linear_model(weights, bias)
    loss_fn = lambda v: tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(v)))
    x_pgd = perturbations.pgd(loss_fn, x, 0.2, norm="linf", step_size=0.05, num_steps=10,
                              random_start=True, seed=keras.random.SeedGenerator(0)).numpy()
    expected = x + 0.2 * np.sign(_cross_entropy_gradient(weights, bias, x, y))
    np.testing.assert_allclose(x_pgd, expected, atol=1e-5)
    x_l2 = perturbations.pgd(loss_fn, x, 0.7, norm="l2", step_size=0.2, num_steps=20,
                             random_start=False).numpy()
    assert np.all(np.linalg.norm(x_l2 - x, axis=1) <= 0.7 + 1e-4)


def test_pgd_clips_to_valid_range():
    x = np.full((2, 3), 0.95, np.float32)
    loss_fn = lambda v: tf.reduce_sum(v)  # gradient +1 everywhere: pushes up
    x_adv = perturbations.pgd(loss_fn, x, 0.2, norm="linf", step_size=0.1, num_steps=3,
                              random_start=False, clip_min=0.0, clip_max=1.0).numpy()
    np.testing.assert_allclose(x_adv, np.ones_like(x))


def test_l2_normalize_rows_have_unit_norm():
    d = np.array([[3.0, 4.0], [1e-9, 0.0], [-2.0, 0.0]], np.float32)
    norms = np.linalg.norm(perturbations.l2_normalize(d).numpy(), axis=1)
    np.testing.assert_allclose(norms, [1.0, 1.0, 1.0], rtol=1e-3)


def test_gauss_newton_product_equals_hessian_times_vector():
    rng = np.random.RandomState(3)
    weights, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    x = rng.normal(size=(2, 4)).astype(np.float32)
    d = rng.normal(size=(2, 4)).astype(np.float32)
    model = linear_model(weights, bias)
    hd = perturbations.gauss_newton_product(lambda v: model(v), x, model(x), d).numpy()
    for n in range(len(x)):
        p = softmax(x[n] @ weights + bias)
        expected = weights @ (np.diag(p) - np.outer(p, p)) @ weights.T @ d[n]
        np.testing.assert_allclose(hd[n], expected, rtol=1e-4, atol=1e-6)


def test_exact_vat_direction_on_a_relu_network_matches_small_xi_in_float64_sense():
    """On a ReLU MLP the exact direction equals the finite difference with a moderate
    xi (no kink crossed), while xi = 1e-6 in float32 is visibly rounded."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(50, activation="relu"),
                              keras.layers.Dense(2)])
    x = np.random.RandomState(0).normal(size=(64, 2)).astype(np.float32)
    start = np.random.RandomState(1).normal(size=(64, 2)).astype(np.float32)
    exact = perturbations.vat_perturbation(lambda v: model(v), x, model(x), xi=0.0, eps=1.0,
                                           initial_direction=start).numpy()
    small = perturbations.vat_perturbation(lambda v: model(v), x, model(x), xi=1e-4, eps=1.0,
                                           initial_direction=start).numpy()
    cosines = np.abs(np.sum(exact * small, axis=1))
    assert np.median(cosines) > 0.999
