"""xAT / xVAT: Hard Concrete masks against their closed form, the same-step
min-max update, and the sparse transductive table."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import perturbations
from tf_advssl.config import ConfigError
from tf_advssl.methods import get_method, make_params

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def logit(p):
    return np.log(p) - np.log1p(-p)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_hard_concrete_exact_zeros_and_ones_have_closed_form_probabilities():
    """z = 0 iff s <= -gamma/(zeta-gamma), z = 1 iff s >= (1-gamma)/(zeta-gamma), with
    s = sigmoid((logit(u) + log_alpha)/beta) and logit(u) standard logistic."""
    num_samples = 100_000
    log_alpha = np.array([-3.0, -1.0, 0.0, 0.5, 2.0], np.float32)
    z = perturbations.hard_concrete_mask(np.tile(log_alpha, (num_samples, 1)), beta=BETA, gamma=GAMMA,
                                         zeta=ZETA, seed=keras.random.SeedGenerator(3)).numpy()
    assert z.min() >= 0.0 and z.max() <= 1.0
    p_zero = sigmoid(BETA * logit(-GAMMA / (ZETA - GAMMA)) - log_alpha)
    p_one = 1.0 - sigmoid(BETA * logit((1.0 - GAMMA) / (ZETA - GAMMA)) - log_alpha)
    tolerance = 5.0 * np.sqrt(np.maximum(p_zero * (1 - p_zero), p_one * (1 - p_one)) / num_samples)
    assert np.all(np.abs((z == 0.0).mean(axis=0) - p_zero) <= tolerance), ((z == 0.0).mean(axis=0), p_zero)
    assert np.all(np.abs((z == 1.0).mean(axis=0) - p_one) <= tolerance), ((z == 1.0).mean(axis=0), p_one)
    # Eq. 12's L0 term is P(z != 0) = sigmoid(log_alpha - beta log(-gamma/zeta)).
    nonzero = perturbations.hard_concrete_nonzero_probability(log_alpha, beta=BETA, gamma=GAMMA, zeta=ZETA)
    np.testing.assert_allclose(nonzero.numpy(), 1.0 - p_zero, rtol=1e-5)


def numpy_mask(log_alpha, u):
    s = sigmoid((np.log(u) - np.log1p(-u) + log_alpha) / BETA)
    return np.clip(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def linear_classifier(weights, bias):
    model = keras.Sequential([keras.Input((weights.shape[0],)), keras.layers.Dense(weights.shape[1])])
    model.layers[0].set_weights([weights.astype(np.float32), bias.astype(np.float32)])
    return model


def make(method, overrides, weights, bias, lr=0.05, num_train_examples=16):
    params = make_params(method, "two_circles", overrides)
    model = get_method(method)(linear_classifier(weights, bias), params, num_classes=weights.shape[1],
                               total_steps=10, num_train_examples=num_train_examples, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(lr))
    model.optimizer.build(model.trainable_for_loss())
    return model


def batch(rng, dim=4, num_classes=3):
    x_l = rng.normal(size=(5, dim)).astype(np.float32)
    y_l = rng.randint(0, num_classes, size=5).astype(np.int64)
    x_u = rng.normal(size=(6, dim)).astype(np.float32)
    idx_u = np.array([2, 9, 5, 14, 0, 9], np.int64)  # a repeated index, as across epoch boundaries
    return (x_l, y_l), (x_u, idx_u)


def divergence(method, weights, bias, x, y, z, weights_target, bias_target, reverse=False):
    """The batch divergence at mask z; the clean target uses the *_target weights (held fixed).
    ``reverse``: KL(p(x * z) || p(x)) instead of KL(p(x) || p(x * z))."""
    logits = (x * z) @ weights + bias
    if method == "xat":
        p = softmax(logits)
        return float(np.mean(-np.log(p[np.arange(len(y)), y])))
    p = softmax(x @ weights_target + bias_target)
    q = softmax(logits)
    if reverse:
        p, q = q, p
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)))


@pytest.mark.parametrize("method,mode,kl", [("xvat", "inductive", "kl"), ("xvat", "transductive", "kl"),
                                            ("xvat", "inductive", "reverse_kl"),
                                            ("xvat", "transductive", "reverse_kl"),
                                            ("xat", "inductive", "kl"), ("xat", "transductive", "kl")])
def test_one_step_moves_log_alpha_up_and_theta_down_the_divergence(method, mode, kl):
    rng = np.random.RandomState(0)
    weights, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    data = batch(rng)
    (x_l, y_l), (x_u, idx_u) = data
    model = make(method, {"x_mode": mode, "l0_lambda": 0.0, "log_alpha_table_learning_rate": 0.2,
                          "log_alpha_init": 1.0, "x_divergence": kl}, weights, bias)
    model.loss_weights = lambda: {"loss_nll": 0.0, "loss_x": 1.0, "loss_l0": 0.0,  # the divergence alone
                                  "loss_entmin": 0.0}
    x = x_l if method == "xat" else x_u
    rows = model.table_rows(tf.constant(x_l), tf.constant(idx_u))
    alpha_before = model.log_alpha(tf.constant(x), rows).numpy()
    seed_state = model.seed_generator.state.numpy().copy()
    model.train_step(data)
    alpha_after = model.log_alpha(tf.constant(x), rows).numpy()
    new_w, new_b = model.classifier.layers[0].get_weights()

    generator = keras.random.SeedGenerator(0)
    generator.state.assign(seed_state)
    u = np.clip(keras.random.uniform(alpha_before.shape, seed=generator).numpy(), 1e-7, 1 - 1e-7)
    at = lambda w, b, log_alpha: divergence(method, w, b, x, y_l, numpy_mask(log_alpha, u), weights, bias,  # noqa
                                            reverse=kl == "reverse_kl")
    before = at(weights, bias, alpha_before)
    assert np.abs(alpha_after - alpha_before).max() > 0
    assert at(weights, bias, alpha_after) > before  # log alpha ascends the divergence
    assert at(new_w, new_b, alpha_before) < before  # theta descends it


@pytest.mark.parametrize("center,kl", [(0.0, "kl"), (0.5, "kl"), (-1.0, "kl"), (0.5, "reverse_kl")])
def test_mask_pulls_inputs_to_x_center(center, kl):
    """A mask that is exactly 0 (log alpha -100) replaces every input by ``center``; one
    that is exactly 1 (log alpha +100) leaves it: KL(p(x) || p(center)) (reverse_kl:
    KL(p(center) || p(x))) and 0 by hand."""
    rng = np.random.RandomState(4)
    weights, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    (x_l, y_l), (x_u, idx_u) = batch(rng)
    p = softmax(x_u @ weights + bias)
    q = np.broadcast_to(softmax(np.full((1, 4), center) @ weights + bias), p.shape)
    if kl == "reverse_kl":
        p, q = q, p
    expected = {-100.0: np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=1)), 100.0: 0.0}
    for init, value in expected.items():
        model = make("xvat", {"x_mode": "transductive", "x_center": center, "log_alpha_init": init,
                              "x_divergence": kl}, weights, bias)
        loss_x = model.compute_losses(x_l, y_l, x_u, model.table_rows(x_l, idx_u))["loss_x"]
        assert float(loss_x) == pytest.approx(value, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(perturbations.apply_mask(x_u, np.zeros_like(x_u), center).numpy(),
                               np.full_like(x_u, center))


def test_l0_term_pushes_log_alpha_towards_keeping_entries():
    """Eq. 12: log alpha maximises + lambda sum sigmoid(log alpha - beta log(-gamma/zeta))."""
    rng = np.random.RandomState(1)
    weights, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    data = batch(rng)
    model = make("xvat", {"x_mode": "transductive", "x_weight": 0.0, "l0_lambda": 1.0}, weights, bias)
    before = model.log_alpha_table.numpy().copy()
    model.train_step(data)
    rows = np.unique(data[1][1])
    assert np.all(model.log_alpha_table.numpy()[rows] > before[rows])


@pytest.mark.parametrize("table_optimizer", ["sgd", "adam"])
def test_transductive_table_updates_only_the_rows_of_the_batch(table_optimizer):
    rng = np.random.RandomState(2)
    weights, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    data = batch(rng)
    model = make("xvat", {"x_mode": "transductive", "log_alpha_init": 0.5,
                          "log_alpha_table_optimizer": table_optimizer}, weights, bias)
    before = model.log_alpha_table.numpy().copy()
    step = tf.function(model.train_step)
    step(data)
    after = model.log_alpha_table.numpy()
    in_batch = np.zeros(len(before), bool)
    in_batch[data[1][1]] = True
    np.testing.assert_array_equal(after[~in_batch], before[~in_batch])
    assert np.all(np.abs(after[in_batch] - before[in_batch]).max(axis=1) > 0)
    if table_optimizer == "adam":  # a second batch elsewhere: the first batch's rows stay put
        (x_l, y_l), (x_u, idx_u) = data
        step(((x_l, y_l), (x_u, np.array([1, 3, 4, 6, 7, 8], np.int64))))
        np.testing.assert_array_equal(model.log_alpha_table.numpy()[in_batch], after[in_batch])


def test_lazy_adam_moves_only_the_rows_of_the_gradient_by_adams_rule():
    """Hand-worked Adam on the visited rows (a repeated row's slices summed); the other rows and
    their moments do not move, whereas dense Adam keeps moving a row through its momentum."""
    from tf_advssl.keras_workarounds import LazyAdam
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-7
    start = np.arange(10, dtype=np.float32).reshape(5, 2)
    table = keras.Variable(start)
    optimizer = LazyAdam(lr)
    optimizer.build([table])

    @tf.function
    def apply(rows, values):
        optimizer.apply_gradients([(tf.IndexedSlices(values, rows, tf.constant([5, 2])), table)])

    apply(tf.constant([1, 3, 1]), tf.constant([[1.0, 2.0], [3.0, -4.0], [1.0, -1.0]]))
    g1 = {1: np.array([2.0, 1.0]), 3: np.array([3.0, -4.0])}
    m = {r: (1 - b1) * g for r, g in g1.items()}
    v = {r: (1 - b2) * g ** 2 for r, g in g1.items()}
    expected = start.astype(np.float64).copy()
    alpha = lr * np.sqrt(1 - b2) / (1 - b1)
    for r in g1:  # Adam's first step: lr * sign(g)
        expected[r] -= alpha * m[r] / (np.sqrt(v[r]) + eps)
    np.testing.assert_allclose(table.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(expected[[1, 3]] - start[[1, 3]], -lr * np.sign([g1[1], g1[3]]), rtol=1e-5)

    apply(tf.constant([3]), tf.constant([[-1.0, 0.5]]))
    m[3], v[3] = b1 * m[3] + (1 - b1) * np.array([-1.0, 0.5]), b2 * v[3] + (1 - b2) * np.array([1.0, 0.25])
    expected[3] -= lr * np.sqrt(1 - b2 ** 2) / (1 - b1 ** 2) * m[3] / (np.sqrt(v[3]) + eps)
    np.testing.assert_allclose(table.numpy(), expected, rtol=1e-6)
    momentum, velocity = (variable.numpy() for variable in optimizer.variables[-2:])
    np.testing.assert_allclose(momentum[[1, 3]], [m[1], m[3]], rtol=1e-6)
    np.testing.assert_allclose(velocity[[1, 3]], [v[1], v[3]], rtol=1e-4)  # 1 - beta_2 in float32
    np.testing.assert_array_equal(momentum[[0, 2, 4]], 0.0)
    np.testing.assert_array_equal(velocity[[0, 2, 4]], 0.0)

    dense_table = keras.Variable(start)  # the same two gradients, dense: row 1 moves again
    dense = keras.optimizers.Adam(lr)
    first = np.zeros((5, 2), np.float32)
    first[1], first[3] = g1[1], g1[3]
    second = np.zeros((5, 2), np.float32)
    second[3] = [-1.0, 0.5]
    dense.apply_gradients([(tf.constant(first), dense_table)])
    after_first = dense_table.numpy()[1].copy()
    dense.apply_gradients([(tf.constant(second), dense_table)])
    assert np.all(dense_table.numpy()[1] != after_first)


def test_xat_transductive_rows_follow_example_content():
    """Labeled examples carry no index: xAT addresses rows by content, stably."""
    rng = np.random.RandomState(3)
    weights, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    model = make("xat", {"x_mode": "transductive"}, weights, bias, num_train_examples=1000)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    rows = model.table_rows(tf.constant(x), None).numpy()
    reordered = model.table_rows(tf.constant(x[::-1]), None).numpy()
    np.testing.assert_array_equal(reordered, rows[::-1])
    assert len(set(rows)) == 5 and rows.min() >= 0 and rows.max() < 1000
    (x_l, y_l), (x_u, idx_u) = batch(rng)
    before = model.log_alpha_table.numpy().copy()
    model.train_step(((x, y_l), (x_u, idx_u)))
    changed = np.flatnonzero(np.abs(model.log_alpha_table.numpy() - before).max(axis=1) > 0)
    np.testing.assert_array_equal(changed, np.unique(rows))


def test_transductive_table_starts_normal_around_log_alpha_init():
    """--log_alpha_init_std draws the table N(init, std^2), as the reference code's N(0, 1)."""
    rng = np.random.RandomState(5)
    weights, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    model = make("xvat", {"x_mode": "transductive", "log_alpha_init": 0.5, "log_alpha_init_std": 2.0},
                 weights, bias, num_train_examples=2000)
    table = model.log_alpha_table.numpy()
    assert table.mean() == pytest.approx(0.5, abs=0.1)  # 8000 draws: standard error 0.02
    assert table.std() == pytest.approx(2.0, rel=0.05)
    constant = make("xvat", {"x_mode": "transductive", "log_alpha_init": 0.5}, weights, bias)
    np.testing.assert_array_equal(constant.log_alpha_table.numpy(), 0.5)


def test_inductive_network_output_bias_starts_normal_around_log_alpha_init():
    """Vectors: one bias per mask entry, drawn N(init, std^2); images: the single output
    channel's bias is one such draw."""
    from tf_advssl.methods.xvat import build_log_alpha_network
    bias = build_log_alpha_network((784,), -1.0, seed=3, init_std=1.5).layers[-2].bias.numpy()
    assert bias.size == 784
    assert bias.mean() == pytest.approx(-1.0, abs=0.2)  # 784 draws: standard error 0.05
    assert bias.std() == pytest.approx(1.5, rel=0.1)
    np.testing.assert_array_equal(build_log_alpha_network((784,), -1.0, seed=3).layers[-2].bias.numpy(), -1.0)
    image_bias = build_log_alpha_network((28, 28, 1), -1.0, seed=3, init_std=1.5).layers[-1].bias.numpy()
    assert image_bias.shape == (1,) and image_bias[0] != -1.0


def test_xvat_mnist_defaults_are_the_reference_transductive_run():
    """xVAT on MNIST defaults to sndnyang/xvat's transductive MNIST script; flags win; xAT and
    other datasets keep the paper's defaults."""
    from tf_advssl.config import Config
    from tf_advssl.methods import resolve
    params = make_params("xvat", "mnist", {})
    assert (params.x_mode, params.x_center, params.x_divergence) == ("transductive", 0.5, "reverse_kl")
    assert (params.log_alpha_init_std, params.log_alpha_table_optimizer, params.log_alpha_table_learning_rate) == (
        1.0, "adam", 1e-2)
    config = resolve(Config(method="xvat", dataset="mnist"))
    assert (tuple(config.mlp_widths), config.batch_size, config.unlabeled_batch_size) == ((1200, 1200), 100, 250)
    assert (config.learning_rate, config.lr_schedule, config.lr_decay_rate) == (1e-3, "exponential", 0.95)
    assert make_params("xvat", "mnist", {"x_mode": "inductive"}).x_mode == "inductive"
    assert resolve(Config(method="xvat", dataset="mnist", batch_size=32)).batch_size == 32
    for method, dataset in (("xat", "mnist"), ("xvat", "two_circles"), ("xvat", "cifar10")):
        params = make_params(method, dataset, {})
        assert (params.x_mode, params.x_center, params.x_divergence) == ("inductive", 0.0, "kl"), (method, dataset)
        assert params.log_alpha_table_optimizer == "sgd", (method, dataset)
        assert resolve(Config(method=method, dataset=dataset)).lr_schedule == "vat_linear"


def test_extra_optimizer_is_built_for_checkpoints():
    rng = np.random.RandomState(4)
    weights, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    for mode in ("inductive", "transductive"):
        model = make("xvat", {"x_mode": mode}, weights, bias)
        (optimizer,) = model.extra_optimizers()
        assert optimizer.variables, mode


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="--x_mode must be one of inductive, transductive"):
        make_params("xvat", "mnist", {"x_mode": "both"})
    with pytest.raises(ConfigError, match="--hard_concrete_gamma must be < 0"):
        make_params("xat", "mnist", {"hard_concrete_gamma": 0.1})
    with pytest.raises(ConfigError, match="--x_divergence must be one of kl, reverse_kl"):
        make_params("xvat", "mnist", {"x_divergence": "js"})
    with pytest.raises(ConfigError, match="--log_alpha_table_optimizer must be one of sgd, adam"):
        make_params("xvat", "mnist", {"log_alpha_table_optimizer": "rmsprop"})
    with pytest.raises(ConfigError, match="--log_alpha_init_std must be >= 0"):
        make_params("xvat", "mnist", {"x_mode": "transductive", "log_alpha_init_std": -1.0})



def softmax_entropy_and_gradient(logits):
    """Mean entropy of softmax(logits) over the rows and its gradient in the logits, by hand:
    dH/dz_k = -p_k (log p_k + H)."""
    p = softmax(logits)
    h = -(p * np.log(p)).sum(axis=1)
    return h.mean(), -p * (np.log(p) + h[:, None]) / len(logits)


def test_xvat_entmin_step_is_sgd_on_the_entropy_of_the_unlabeled_predictions():
    """xVAT+EntMin on a linear classifier with only the entropy term weighted: the classifier
    step is SGD on the mean entropy of the clean unlabeled predictions, worked out by hand,
    and log alpha (which the term does not reach) stays where it was."""
    rng = np.random.RandomState(7)
    weights, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    data = batch(rng)
    lr = 0.5
    model = make("xvat", {"x_mode": "transductive", "entmin": True}, weights, bias, lr=lr)
    assert model.loss_weights()["loss_entmin"] == 1.0
    model.loss_weights = lambda: {"loss_nll": 0.0, "loss_x": 0.0, "loss_l0": 0.0, "loss_entmin": 1.0}
    table = model.log_alpha_table.numpy().copy()
    logs = model.train_step(data)
    x_u = data[1][0].astype(np.float64)
    entropy, grad_logits = softmax_entropy_and_gradient(x_u @ weights + bias)
    assert float(logs["loss_entmin"]) == pytest.approx(entropy, rel=1e-5)
    new_weights, new_bias = model.classifier.layers[0].get_weights()
    np.testing.assert_allclose(new_weights, weights - lr * x_u.T @ grad_logits, atol=1e-5)
    np.testing.assert_allclose(new_bias, bias - lr * grad_logits.sum(axis=0), atol=1e-5)
    np.testing.assert_array_equal(model.log_alpha_table.numpy(), table)


def test_xvat_without_entmin_logs_the_entropy_with_weight_zero_and_xat_has_no_such_term():
    rng = np.random.RandomState(8)
    weights, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    (x_l, y_l), (x_u, idx_u) = batch(rng)
    model = make("xvat", {}, weights, bias)
    assert model.loss_weights()["loss_entmin"] == 0.0
    terms = model.compute_losses(x_l, y_l, x_u, None)
    assert float(terms["loss_entmin"]) == pytest.approx(
        softmax_entropy_and_gradient(x_u.astype(np.float64) @ weights + bias)[0], rel=1e-5)
    xat = make("xat", {}, weights, bias)
    assert "loss_entmin" not in xat.loss_weights() and "loss_entmin" not in xat.loss_names
