"""The adversarial-network generator: each player's step moves L_adv its way,
the reconstruction weight holds G near the identity, the roles of encoder and
decoder, and the picture grid."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import plotting
from tf_advssl.layers import BatchNormalization
from tf_advssl.methods import get_method, make_params


def linear_classifier(weights, bias):
    model = keras.Sequential([keras.Input((weights.shape[0],)), keras.layers.Dense(weights.shape[1])])
    model.layers[0].set_weights([weights.astype(np.float32), bias.astype(np.float32)])
    return model


def make(overrides, classifier, lr=0.1):
    params = make_params("advgen", "two_circles", overrides)
    model = get_method("advgen")(classifier, params, num_classes=classifier.output_shape[-1], total_steps=100,
                                 seed=3)
    model.compile(optimizer=keras.optimizers.SGD(lr))
    model.optimizer.build(model.trainable_for_loss())
    return model


def data(rng, num_unlabeled=64, dim=2):
    x_l = rng.normal(size=(4, dim)).astype(np.float32)
    y_l = rng.randint(0, 2, size=4).astype(np.int64)
    x_u = rng.normal(size=(num_unlabeled, dim)).astype(np.float32)
    return x_l, y_l, x_u


def adv_loss(model, x):
    """L_adv and L_reconst of G (noise std 0: deterministic) against the current C."""
    return [float(v) for v in model.adversarial_terms(x, model.frozen_logits(x), model.generate(x))]


def test_generator_step_raises_adversarial_loss_against_a_fixed_classifier():
    rng = np.random.RandomState(0)
    classifier = linear_classifier(rng.normal(size=(2, 2)), rng.normal(size=2))
    model = make({"advgen_noise_std": 0.0, "advgen_lambda": 0.0, "advgen_learning_rate": 0.01}, classifier)
    _, _, x_u = data(rng)
    before_classifier = classifier.get_weights()
    step = tf.function(model.generator_step)
    losses = [adv_loss(model, x_u)[0]]
    for _ in range(5):
        step(x_u, model.frozen_logits(x_u))
        losses.append(adv_loss(model, x_u)[0])
    assert np.all(np.diff(losses) > 0), losses
    for a, b in zip(before_classifier, classifier.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_classifier_step_lowers_adversarial_loss_against_a_fixed_generator():
    rng = np.random.RandomState(1)
    classifier = linear_classifier(rng.normal(size=(2, 2)), rng.normal(size=2))
    model = make({"advgen_noise_std": 0.0}, classifier, lr=0.5)
    model.loss_weights = lambda: {"loss_nll": 0.0, "loss_adv": 1.0, "loss_reconst": 0.0, "loss_entmin": 0.0}
    x_l, y_l, x_u = data(rng)
    before_generator = [v.numpy().copy() for v in model.generator_variables()]
    step = tf.function(model.classifier_step)
    losses = [adv_loss(model, x_u)[0]]
    for _ in range(5):
        step(x_l, y_l, x_u, model.frozen_logits(x_u))
        losses.append(adv_loss(model, x_u)[0])
    assert np.all(np.diff(losses) < 0), losses
    for a, b in zip(before_generator, model.generator_variables()):
        np.testing.assert_array_equal(a, b.numpy())


def reconstruction_after_training(advgen_lambda, steps=150):
    rng = np.random.RandomState(2)
    classifier = linear_classifier(3 * rng.normal(size=(2, 2)), rng.normal(size=2))
    model = make({"advgen_lambda": advgen_lambda, "advgen_learning_rate": 0.01}, classifier)
    _, _, x_u = data(rng, num_unlabeled=128)
    step = tf.function(model.generator_step)
    logits_clean = model.frozen_logits(x_u)
    for _ in range(steps):
        step(x_u, logits_clean)
    return adv_loss(model, x_u), float(np.mean(np.sum(x_u ** 2, axis=1)))


def test_large_reconstruction_weight_keeps_the_generator_near_the_identity():
    (adv_large, reconst_large), scale = reconstruction_after_training(100.0)
    (adv_none, reconst_none), _ = reconstruction_after_training(0.0)
    assert reconst_large < 0.05 * scale, (reconst_large, scale)
    assert reconst_none > 10 * reconst_large
    assert adv_none > adv_large


def test_only_the_encoder_pursues_the_adversarial_loss():
    """With lambda = 0 the decoder gets no gradient: the search is in the latent space."""
    rng = np.random.RandomState(3)
    classifier = linear_classifier(rng.normal(size=(2, 2)), rng.normal(size=2))
    model = make({"advgen_lambda": 0.0}, classifier)
    _, _, x_u = data(rng)
    encoder = [v.numpy().copy() for v in model.encoder.trainable_variables]
    decoder = [v.numpy().copy() for v in model.decoder.trainable_variables]
    model.generator_step(x_u, model.frozen_logits(x_u))
    assert all(not np.array_equal(a, v.numpy()) for a, v in zip(encoder, model.encoder.trainable_variables))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(decoder, model.decoder.trainable_variables))


@pytest.mark.parametrize("entmin", [False, True])
def test_classifier_batch_norm_moves_only_with_the_clean_labeled_batch(entmin):
    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(4)
    classifier = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4, name="hidden"),
                                   BatchNormalization(momentum=0.9, name="bn"), keras.layers.Dense(2)])
    model = make({"entmin": entmin}, classifier)
    x_l, y_l, x_u = data(rng)
    hidden = classifier.get_layer("hidden")(x_l).numpy()
    tf.function(model.train_step)(((x_l, y_l), (x_u, np.arange(len(x_u)))))
    np.testing.assert_allclose(classifier.get_layer("bn").moving_mean.numpy(), 0.1 * hidden.mean(axis=0),
                               atol=1e-6)


def softmax_entropy_and_gradient(logits):
    """Mean entropy of softmax(logits) over the rows and its gradient in the logits, by hand:
    dH/dz_k = -p_k (log p_k + H)."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    h = -(p * np.log(p)).sum(axis=1)
    return h.mean(), -p * (np.log(p) + h[:, None]) / len(logits)


def test_entmin_adds_the_entropy_of_the_unlabeled_predictions_to_the_classifier_step():
    """On a linear C with only the entropy term weighted, the C step is SGD on the mean
    entropy of the unlabeled predictions, worked out by hand; G does not move."""
    rng = np.random.RandomState(5)
    weights, bias = rng.normal(size=(3, 4)), rng.normal(size=4)
    lr = 0.5
    x_l, y_l, x_u = data(rng, num_unlabeled=16, dim=3)
    y_l = y_l + 2  # four classes
    model = make({"entmin": True, "advgen_noise_std": 0.0}, linear_classifier(weights, bias), lr=lr)
    assert model.loss_weights()["loss_entmin"] == 1.0
    model.loss_weights = lambda: {"loss_nll": 0.0, "loss_adv": 0.0, "loss_reconst": 0.0, "loss_entmin": 1.0}
    before_generator = [v.numpy().copy() for v in model.generator_variables()]

    terms, _ = model.classifier_step(x_l, y_l, x_u, model.frozen_logits(x_u))

    entropy, grad_logits = softmax_entropy_and_gradient(x_u.astype(np.float64) @ weights + bias)
    assert float(terms["loss_entmin"]) == pytest.approx(entropy, rel=1e-5)
    new_weights, new_bias = model.classifier.layers[0].get_weights()
    np.testing.assert_allclose(new_weights, weights - lr * x_u.T @ grad_logits, atol=1e-5)
    np.testing.assert_allclose(new_bias, bias - lr * grad_logits.sum(axis=0), atol=1e-5)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before_generator, model.generator_variables()))


def test_entmin_off_logs_the_entropy_with_weight_zero():
    rng = np.random.RandomState(6)
    weights, bias = rng.normal(size=(2, 2)), rng.normal(size=2)
    model = make({}, linear_classifier(weights, bias))
    assert model.loss_weights()["loss_entmin"] == 0.0
    x_l, y_l, x_u = data(rng)
    terms = model.compute_losses(x_l, y_l, x_u, None)
    assert float(terms["loss_entmin"]) == pytest.approx(softmax_entropy_and_gradient(x_u @ weights + bias)[0],
                                                        rel=1e-5)


def test_image_generator_is_convolutional_and_the_grid_is_written(tmp_path, saved_figures):
    classifier = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    model = make({}, classifier)
    assert any(isinstance(layer, keras.layers.Conv2D) for layer in model.encoder.layers)
    x = np.random.RandomState(5).normal(size=(4, 8, 8, 1)).astype(np.float32)
    generated = model.generate(x, training=False).numpy()
    assert generated.shape == x.shape
    path = plotting.generated_examples_figure(x, generated, os.path.join(tmp_path, "grid.png"))
    assert os.path.isfile(path)
    figure = saved_figures[path]  # originals in the top row, generated examples below, one column each
    assert len(figure.axes) == 2 * 4
    grid = np.array(figure.axes, dtype=object).reshape(2, 4)
    assert grid[0, 0].get_title(loc="left") == "original" and grid[1, 0].get_title(loc="left") == "generated"
    for row, images in enumerate((x, generated)):
        for k in range(4):
            assert len(grid[row, k].images) == 1
            image = images[k, :, :, 0]
            np.testing.assert_allclose(np.asarray(grid[row, k].images[0].get_array()),
                                       (image - image.min()) / (image.max() - image.min() + 1e-8), atol=1e-5)
