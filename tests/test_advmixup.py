"""AdvMixup / ICT on tiny linear models against hand computations."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import analysis, perturbations
from tf_advssl.config import ConfigError
from tf_advssl.layers import BatchNormalization
from tf_advssl.methods import get_method, make_params


from linear_models import linear_classifier, softmax  # noqa: E402


def make(method, overrides, weights, bias, teacher=None, lr=0.1):
    params = make_params(method, "two_circles", overrides)
    model = get_method(method)(linear_classifier(weights, bias), params, num_classes=weights.shape[1],
                               total_steps=100, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(lr))
    model.optimizer.build(model.trainable_for_loss())
    if teacher is not None:
        model.teacher.layers[0].set_weights([w.astype(np.float32) for w in teacher])
    return model


def batch(rng, dim=3, num_classes=3, num_unlabeled=6):
    x_l = rng.normal(size=(4, dim)).astype(np.float32)
    y_l = rng.randint(0, num_classes, size=4).astype(np.int64)
    x_u = rng.normal(size=(num_unlabeled, dim)).astype(np.float32)
    return (x_l, y_l), (x_u, np.arange(num_unlabeled, dtype=np.int64))


def fix_draws(model, lam, permutation):
    model.mixup_lambda = lambda: tf.constant(lam, tf.float32)
    model.mixup_permutation = lambda batch_size: tf.constant(permutation, tf.int32)


@pytest.mark.parametrize("pairs", ["real_adv", "real_real"])
@pytest.mark.parametrize("divergence", ["mse", "kl"])
def test_lambda_one_is_consistency_with_the_teacher_on_real_samples(pairs, divergence):
    rng = np.random.RandomState(0)
    weights, bias = rng.normal(size=(3, 3)), rng.normal(size=3)
    teacher = rng.normal(size=(3, 3)), rng.normal(size=3)
    data = batch(rng)
    model = make("advmixup", {"mixup_pairs": pairs, "mixup_divergence": divergence, "vat_eps": 2.0},
                 weights, bias, teacher)
    fix_draws(model, 1.0, [5, 4, 3, 2, 1, 0])
    logs = model.train_step(data)
    x_u = data[1][0]
    target, p = softmax(x_u @ teacher[0] + teacher[1]), softmax(x_u @ weights + bias)
    if divergence == "mse":
        expected = np.mean(np.sum((p - target) ** 2, axis=1))
    else:
        expected = np.mean(np.sum(target * (np.log(target) - np.log(p)), axis=1))
    assert float(logs["loss_mixup"]) == pytest.approx(expected, rel=1e-5)


def test_real_real_is_the_ict_loss_and_update_by_hand():
    rng = np.random.RandomState(1)
    weights, bias = rng.normal(size=(3, 3)), rng.normal(size=3)
    teacher = rng.normal(size=(3, 3)), rng.normal(size=3)
    (x_l, y_l), (x_u, idx_u) = batch(rng)
    model = make("ict", {"mixup_weight": 10.0, "mixup_rampup": 0.0}, weights, bias, teacher, lr=0.1)
    permutation, lam = np.array([2, 0, 1, 5, 3, 4]), 0.3
    fix_draws(model, lam, permutation)
    logs = model.train_step(((x_l, y_l), (x_u, idx_u)))

    # ICT (Verma et al. 2019): student(mix(u_i, u_j)) vs mix(teacher(u_i), teacher(u_j)), squared error.
    x_mix = lam * x_u + (1 - lam) * x_u[permutation]
    t = softmax(x_u @ teacher[0] + teacher[1])
    y_mix = lam * t + (1 - lam) * t[permutation]
    p_mix = softmax(x_mix @ weights + bias)
    loss_mix = np.mean(np.sum((p_mix - y_mix) ** 2, axis=1))
    assert float(logs["loss_mixup"]) == pytest.approx(loss_mix, rel=1e-5)
    # Gradient: d/dlogits sum_k (p_k - y_k)^2 = 2 (diag(p) - p p^T)(p - y).
    diff = p_mix - y_mix
    dlogits = 2 * (p_mix * diff - p_mix * np.sum(p_mix * diff, axis=1, keepdims=True)) / len(x_u)
    p_l = softmax(x_l @ weights + bias)
    dnll = (p_l - np.eye(3)[y_l]) / len(x_l)
    grad_w = x_l.T @ dnll + 10.0 * x_mix.T @ dlogits
    grad_b = dnll.sum(axis=0) + 10.0 * dlogits.sum(axis=0)
    new_w, new_b = model.classifier.layers[0].get_weights()
    np.testing.assert_allclose(new_w, weights - 0.1 * grad_w, atol=1e-5)
    np.testing.assert_allclose(new_b, bias - 0.1 * grad_b, atol=1e-5)


def test_zero_radius_real_adv_equals_real_real():
    rng = np.random.RandomState(2)
    weights, bias = rng.normal(size=(3, 3)), rng.normal(size=3)
    data = batch(rng)
    results = []
    for pairs in ("real_adv", "real_real"):
        model = make("advmixup", {"mixup_pairs": pairs, "vat_eps": 0.0}, weights, bias)
        fix_draws(model, 0.4, [1, 2, 3, 4, 5, 0])
        model.train_step(data)
        results.append(model.classifier.get_weights())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_adversarial_end_is_the_students_vat_direction_against_the_teacher():
    """lam = 0 leaves x_j^adv = x_j + r_j, r_j = argmax_r D[f_t(x_j), f(x_j + r)] (seed's equation)."""
    rng = np.random.RandomState(6)
    weights, bias = rng.normal(size=(3, 3)), rng.normal(size=3)
    teacher = rng.normal(size=(3, 3)), rng.normal(size=3)
    (x_l, y_l), (x_u, idx_u) = batch(rng)
    model = make("advmixup", {"mixup_divergence": "kl", "vat_eps": 1.5}, weights, bias, teacher)
    permutation = np.array([3, 4, 5, 0, 1, 2])
    fix_draws(model, 0.0, permutation)
    seed_state = model.seed_generator.state.numpy().copy()
    terms = model.compute_losses(x_l, y_l, x_u, idx_u)
    generator = keras.random.SeedGenerator(0)
    generator.state.assign(seed_state)
    student, teacher_model = linear_classifier(weights, bias), linear_classifier(*teacher)
    r_adv = perturbations.vat_perturbation(lambda v: student(v), x_u, teacher_model(x_u), xi=1e-6, eps=1.5,
                                           seed=generator).numpy()
    np.testing.assert_allclose(np.linalg.norm(r_adv, axis=1), 1.5, rtol=1e-4)
    target = softmax(x_u @ teacher[0] + teacher[1])[permutation]
    p = softmax((x_u + r_adv)[permutation] @ weights + bias)
    expected = np.mean(np.sum(target * (np.log(target) - np.log(p)), axis=1))
    assert float(terms["loss_mixup"]) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("pairs", ["real_adv", "adv_adv"])
def test_the_teacher_receives_no_gradient_only_the_ema(pairs):
    rng = np.random.RandomState(3)
    weights, bias = rng.normal(size=(3, 3)), rng.normal(size=3)
    teacher = rng.normal(size=(3, 3)), rng.normal(size=3)
    (x_l, y_l), (x_u, idx_u) = batch(rng)
    model = make("advmixup", {"mixup_pairs": pairs}, weights, bias, teacher)
    with tf.GradientTape(persistent=True) as tape:
        terms = model.compute_losses(x_l, y_l, x_u, idx_u)
    for name, term in terms.items():
        assert all(g is None for g in tape.gradient(term, model.teacher.weights)), name
    model.train_step(((x_l, y_l), (x_u, idx_u)))
    decay = min(0.999, 2.0 / 11.0)  # after the first update: min(ema_decay, (1 + t)/(10 + t)), t = 1
    student = model.classifier.get_weights()
    for old, new, s in zip(teacher, model.teacher.get_weights(), student):
        np.testing.assert_allclose(new, decay * old + (1 - decay) * s, atol=1e-6)


@pytest.mark.parametrize("joint_batch", [True, False])
def test_batch_norm_statistics_of_the_student_pass_and_the_teacher_uses_batch_statistics(joint_batch):
    """Joint (default): the moving mean moves with the labeled AND mixed rows of one pass;
    separate passes: with the clean labeled batch only.  The teacher never moves them."""
    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(7)
    classifier = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="hidden"),
                                   BatchNormalization(momentum=0.9, name="bn"), keras.layers.Dense(3)])
    params = make_params("advmixup", "two_circles", {"joint_batch": joint_batch, "vat_eps": 0.0})
    model = get_method("advmixup")(classifier, params, num_classes=3, total_steps=10, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.optimizer.build(model.trainable_for_loss())
    (x_l, y_l), (x_u, idx_u) = batch(rng)
    lam, permutation = 0.3, [5, 4, 3, 2, 1, 0]
    fix_draws(model, lam, permutation)
    x_mixed = lam * x_u + (1 - lam) * x_u[permutation]  # eps = 0: the adversarial end is x_j itself
    student_rows = np.concatenate([x_l, x_mixed]) if joint_batch else x_l
    hidden = classifier.get_layer("hidden")(student_rows).numpy()
    teacher_bn = model.teacher.get_layer("bn")
    teacher_stats = [teacher_bn.moving_mean.numpy().copy(), teacher_bn.moving_variance.numpy().copy()]
    batch_stats_logits = model.teacher_logits(x_u).numpy()
    assert not np.allclose(batch_stats_logits, model.teacher(x_u, training=False).numpy())
    np.testing.assert_array_equal(teacher_bn.moving_mean.numpy(), teacher_stats[0])
    tf.function(model.train_step)(((x_l, y_l), (x_u, idx_u)))
    np.testing.assert_allclose(classifier.get_layer("bn").moving_mean.numpy(), 0.1 * hidden.mean(axis=0),
                               atol=1e-6)


def test_joint_pass_normalises_the_labeled_rows_with_the_mixed_rows():
    """With batch norm, the labeled NLL of the joint pass depends on the unlabeled batch.

    The weights are seeded: the shift moves the labeled logits by O(1) under any
    initialisation, but the batch-mean NLL can nearly cancel (Keras global seed 162: per-row
    changes +0.44, -0.34, -1.19, +1.09 average to 8e-4 < 1e-3); at seed 0 it moves by 0.11."""
    keras.utils.set_random_seed(0)
    classifier = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="hidden"),
                                   BatchNormalization(name="bn"), keras.layers.Dense(3)])
    rng = np.random.RandomState(8)
    (x_l, y_l), (x_u, idx_u) = batch(rng)
    nll = {}
    for joint_batch in (True, False):
        params = make_params("ict", "two_circles", {"joint_batch": joint_batch})
        model = get_method("ict")(classifier, params, num_classes=3, total_steps=10, seed=1)
        fix_draws(model, 0.5, [5, 4, 3, 2, 1, 0])
        nll[joint_batch] = [float(model.compute_losses(x_l, y_l, shift + x_u, idx_u)["loss_nll"])
                            for shift in (0.0, 3.0)]
    assert nll[False][0] == pytest.approx(nll[False][1], rel=1e-6)
    assert abs(nll[True][0] - nll[True][1]) > 1e-3, nll


def test_mixing_coefficient_is_beta_distributed():
    lam = perturbations.sample_beta(0.5, seed=keras.random.SeedGenerator(4), shape=(20000,)).numpy()
    assert lam.min() >= 0.0 and lam.max() <= 1.0
    # Beta(0.5, 0.5): mean 1/2, variance 1/8, P(lam < 0.1) = (2/pi) asin(sqrt(0.1)).
    assert abs(lam.mean() - 0.5) < 0.01 and abs(lam.var() - 0.125) < 0.005
    assert abs(np.mean(lam < 0.1) - 2 / np.pi * np.arcsin(np.sqrt(0.1))) < 0.01
    rng = np.random.RandomState(4)
    model = make("advmixup", {"mixup_alpha": 0.5}, rng.normal(size=(3, 3)), rng.normal(size=3))
    assert float(model.mixup_lambda()) != float(model.mixup_lambda())  # a fresh draw per step


def test_interpolation_paths_meet_at_the_real_end():
    rng = np.random.RandomState(5)
    weights, bias = rng.normal(size=(3, 3)), rng.normal(size=3)
    model = linear_classifier(weights, bias)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.randint(0, 3, size=40)
    result = analysis.interpolation_path_errors(lambda v: model(v), x, y, eps=1.0, lambdas=(0.0, 0.5, 1.0))
    error = 100.0 * np.mean(np.argmax(x @ weights + bias, axis=1) != y)
    assert result["real_real"][-1] == pytest.approx(error) == result["real_adversarial"][-1]
    assert result["real_real"][0] == pytest.approx(error)  # x_j runs over a permutation of x
    assert result["real_adversarial"][0] >= result["real_real"][0]


def test_ict_is_real_real_only():
    assert make_params("ict", "mnist", {}).mixup_pairs == "real_real"
    assert make_params("advmixup", "mnist", {}).mixup_pairs == "real_adv"
    with pytest.raises(ConfigError, match="--method=ict mixes real samples only"):
        make_params("ict", "mnist", {"mixup_pairs": "real_adv"})
    with pytest.raises(ConfigError, match="--mixup_pairs must be one of"):
        make_params("advmixup", "mnist", {"mixup_pairs": "adv_real"})
