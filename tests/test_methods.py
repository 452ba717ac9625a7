"""Training steps of the foundation methods on tiny models, against hand computations."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import perturbations
from tf_advssl.layers import BatchNormalization
from tf_advssl.methods import get_method, make_params
from tf_advssl.hparams.common import NoParams


from linear_models import linear_classifier, make_method as make, softmax  # noqa: E402


def batch(rng, num_labeled=4, num_unlabeled=6, dim=3, num_classes=2):
    x_l = rng.normal(size=(num_labeled, dim)).astype(np.float32)
    y_l = rng.randint(0, num_classes, size=num_labeled).astype(np.int64)
    x_u = rng.normal(size=(num_unlabeled, dim)).astype(np.float32)
    return (x_l, y_l), (x_u, np.arange(num_unlabeled, dtype=np.int64))


def ce_weight_gradient(weights, bias, x, y):
    p = softmax(x @ weights + bias)
    delta = (p - np.eye(weights.shape[1])[y]) / len(x)
    return x.T @ delta, delta.sum(axis=0)


def test_supervised_step_is_plain_sgd_on_cross_entropy():
    rng = np.random.RandomState(0)
    weights, bias = np.full((3, 2), 0.5), np.array([0.1, -0.1])
    weights[0, 1] = -0.5
    data = batch(rng)
    model = make("supervised", linear_classifier(weights, bias))
    logs = model.train_step(data)
    (x_l, y_l), _ = data
    grad_w, grad_b = ce_weight_gradient(weights, bias, x_l, y_l)
    new_w, new_b = model.classifier.layers[0].get_weights()
    np.testing.assert_allclose(new_w, weights - 0.1 * grad_w, atol=1e-6)
    np.testing.assert_allclose(new_b, bias - 0.1 * grad_b, atol=1e-6)
    p = softmax(x_l @ weights + bias)
    assert float(logs["loss_nll"]) == pytest.approx(-np.mean(np.log(p[np.arange(4), y_l])), rel=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_at_step_mixes_clean_and_adversarial_gradients(norm):
    rng = np.random.RandomState(1)
    weights, bias = rng.normal(size=(3, 2)), rng.normal(size=2)
    data = batch(rng)
    params = make_params("at", "two_circles", {"at_eps": 0.3, "at_alpha": 0.25, "at_norm": norm})
    model = make("at", linear_classifier(weights, bias), params)
    model.train_step(data)
    (x_l, y_l), _ = data
    input_grad = (softmax(x_l @ weights + bias) - np.eye(2)[y_l]) @ weights.T
    if norm == "linf":
        x_adv = x_l + 0.3 * np.sign(input_grad)
    else:
        x_adv = x_l + 0.3 * input_grad / np.linalg.norm(input_grad, axis=1, keepdims=True)
    clean_w, clean_b = ce_weight_gradient(weights, bias, x_l, y_l)
    adv_w, adv_b = ce_weight_gradient(weights, bias, x_adv, y_l)
    new_w, new_b = model.classifier.layers[0].get_weights()
    np.testing.assert_allclose(new_w, weights - 0.1 * (0.25 * clean_w + 0.75 * adv_w), atol=1e-5)
    np.testing.assert_allclose(new_b, bias - 0.1 * (0.25 * clean_b + 0.75 * adv_b), atol=1e-5)


def test_vat_step_with_zero_radius_is_supervised_step():
    """eps = 0 makes r_vadv = 0, so the VAT term and its gradient vanish."""
    rng = np.random.RandomState(2)
    weights, bias = rng.normal(size=(3, 2)), rng.normal(size=2)
    data = batch(rng)
    vat = make("vat", linear_classifier(weights, bias), make_params("vat", "two_circles", {"vat_eps": 0.0}))
    logs = vat.train_step(data)
    supervised = make("supervised", linear_classifier(weights, bias))
    supervised.train_step(data)
    assert float(logs["loss_vat"]) == pytest.approx(0.0, abs=1e-7)
    for a, b in zip(vat.classifier.get_weights(), supervised.classifier.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_vat_gradient_flows_through_perturbed_branch_only():
    """With no labeled loss weight, the VAT update equals the gradient of
    KL(stop(p(x)) || p(x + r)) at the r the perturbation function returns."""
    rng = np.random.RandomState(3)
    weights, bias = rng.normal(size=(3, 3)), rng.normal(size=3)
    data = batch(rng, num_classes=3)
    params = make_params("vat", "two_circles", {"vat_eps": 0.5, "vat_weight": 1.0})
    model = make("vat", linear_classifier(weights, bias), params, lr=1.0)
    model.loss_weights = lambda: {"loss_nll": 0.0, "loss_vat": 1.0, "loss_entmin": 0.0}
    seed_state = model.seed_generator.state.numpy().copy()
    model.train_step(data)
    # Recompute r with the same random start (same seed-generator state), then the gradient by hand.
    (_, _), (x_u, _) = data
    reference = linear_classifier(weights, bias)
    generator = keras.random.SeedGenerator(0)
    generator.state.assign(seed_state)
    r_adv = perturbations.vat_perturbation(lambda v: reference(v), x_u, reference(x_u), xi=params.vat_xi, eps=0.5,
                                           seed=generator).numpy()
    p = softmax(x_u @ weights + bias)
    q = softmax((x_u + r_adv) @ weights + bias)
    delta = (q - p) / len(x_u)  # d KL(p || q) / d logits_q, batch mean
    new_w, new_b = model.classifier.layers[0].get_weights()
    np.testing.assert_allclose(new_w, weights - (x_u + r_adv).T @ delta, atol=1e-5)
    np.testing.assert_allclose(new_b, bias - delta.sum(axis=0), atol=1e-5)


def bn_classifier(seed=0):
    """Dense-BN-Dense with seeded kernels (the result must not depend on the global Keras seed)."""
    init = keras.initializers.GlorotUniform
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="hidden", kernel_initializer=init(seed)),
                             BatchNormalization(momentum=0.9, name="bn"),
                             keras.layers.Dense(2, kernel_initializer=init(seed + 1))])


@pytest.mark.parametrize("method", ["vat", "at"])
def test_perturbed_passes_leave_batch_norm_statistics_alone(method):
    """After one step, the BN moving mean has moved only by the clean labeled batch."""
    rng = np.random.RandomState(4)
    classifier = bn_classifier()
    data = batch(rng)
    (x_l, _), _ = data
    hidden = classifier.get_layer("hidden")(x_l).numpy()
    model = make(method, classifier)
    tf.function(model.train_step)(data)
    bn = classifier.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * hidden.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * hidden.var(axis=0), atol=1e-5)


def test_perturbation_functions_do_not_touch_batch_norm_statistics():
    classifier = bn_classifier()
    x = np.random.RandomState(5).normal(size=(8, 3)).astype(np.float32)
    y = np.zeros(8, np.int64)
    bn = classifier.get_layer("bn")
    before = [bn.moving_mean.numpy().copy(), bn.moving_variance.numpy().copy()]
    logits_fn = lambda v: classifier(v, training=True)
    perturbations.vat_perturbation(logits_fn, x, np.zeros((8, 2), np.float32), xi=1e-6, eps=1.0, seed=0)
    perturbations.fgsm(lambda v: tf.reduce_sum(
        tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits_fn(v))), x, 0.1)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before[0])
    np.testing.assert_array_equal(bn.moving_variance.numpy(), before[1])
    classifier(x, training=True)  # outside the context the statistics do move
    assert not np.allclose(bn.moving_mean.numpy(), before[0])


def test_unknown_method_and_bad_parameters_are_config_errors():
    from tf_advssl.config import ConfigError
    with pytest.raises(ConfigError, match="--method.*allowed: .*vat"):
        get_method("nope")
    with pytest.raises(ConfigError, match="--vat_eps must be >= 0"):
        make_params("vat", "mnist", {"vat_eps": -1.0})
    with pytest.raises(ConfigError, match="--at_norm must be one of linf, l2"):
        make_params("at", "mnist", {"at_norm": "l1"})


def test_dataset_defaults_then_overrides():
    assert make_params("vat", "cifar10", {}).vat_eps == 8.0
    assert make_params("vat", "cifar10", {"vat_eps": 3.0}).vat_eps == 3.0
    assert make_params("vat", "my_tfds_set", {}).vat_eps == 1.0
    assert make_params("vat", "mnist", {"at_eps": 0.2}).vat_eps == 0.3  # other methods' params ignored


def test_no_params_placeholder_is_only_for_parameterless_methods():
    assert get_method("supervised").Params is NoParams


def test_each_method_class_has_the_params_of_the_hparams_registry():
    from tf_advssl import hparams, methods
    assert set(hparams.PARAMS) == set(methods.METHODS)
    for name in methods.METHODS:
        assert get_method(name).Params is hparams.get_params(name), name


@pytest.mark.parametrize("method", ["mean_teacher", "ict", "advmixup"])
def test_teacher_normalises_with_batch_statistics_and_keeps_its_moving_averages(method):
    """The EMA teacher's forward pass in training mode uses the batch's statistics (as the
    reference implementations), and neither its nor the student's moving averages move
    because of it; the teacher's moving averages change only through the EMA."""
    rng = np.random.RandomState(6)
    model = make(method, bn_classifier())
    x = rng.normal(loc=3.0, size=(8, 3)).astype(np.float32)
    teacher_bn = model.teacher.get_layer("bn")
    student_bn = model.classifier.get_layer("bn")
    before = [v.numpy().copy() for v in (teacher_bn.moving_mean, teacher_bn.moving_variance,
                                         student_bn.moving_mean, student_bn.moving_variance)]
    logits = model.teacher_logits(tf.constant(x)).numpy()
    hidden = model.teacher.get_layer("hidden")(x).numpy()
    normalised = (hidden - hidden.mean(0)) / np.sqrt(hidden.var(0) + teacher_bn.epsilon)
    last = model.teacher.layers[-1]
    expected = normalised @ last.kernel.numpy() + last.bias.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    after = [v.numpy() for v in (teacher_bn.moving_mean, teacher_bn.moving_variance,
                                 student_bn.moving_mean, student_bn.moving_variance)]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_run_defaults_come_from_flags_then_method_then_dataset():
    from tf_advssl.config import Config
    from tf_advssl.methods import resolve
    vat = resolve(Config(method="vat", dataset="mnist"))
    assert (vat.batch_size, vat.unlabeled_batch_size) == (32, 128)
    fixmatch = resolve(Config(method="fixmatch", dataset="cifar10"))
    assert (fixmatch.batch_size, fixmatch.unlabeled_batch_size) == (64, 448)  # B = 64, mu = 7
    mixmatch = resolve(Config(method="mixmatch", dataset="cifar10"))
    assert (mixmatch.batch_size, mixmatch.unlabeled_batch_size) == (64, 64)
    explicit = resolve(Config(method="fixmatch", dataset="cifar10", unlabeled_batch_size=100))
    assert (explicit.batch_size, explicit.unlabeled_batch_size) == (64, 100)


@pytest.mark.parametrize("method", ["pi_model", "temporal_ensembling", "mean_teacher", "ict", "advmixup",
                                    "mixmatch"])
def test_consistency_methods_translate_mnist_like_sets_by_default(method):
    """Their papers train with 2-pixel translations; MNIST's own default (VAT's) has none."""
    from tf_advssl.config import Config
    from tf_advssl.methods import resolve
    for dataset in ("mnist", "fashion_mnist"):
        assert resolve(Config(method=method, dataset=dataset)).augment_translate == 2
        assert resolve(Config(method=method, dataset=dataset, augment_translate=0)).augment_translate == 0
    assert resolve(Config(method=method, dataset="two_circles")).augment_translate == 0
    assert resolve(Config(method="vat", dataset="mnist")).augment_translate == 0
    assert resolve(Config(method="pseudo_label", dataset="mnist")).augment_translate == 0
