"""What several methods share: ramp-ups, consistency and pseudo-label helpers, and the update
of one optimizer on one loss (the fields and checks of their Params: tf_advssl.hparams.common)."""
from __future__ import annotations

import keras
import tensorflow as tf

from tf_advssl import losses


# Random translations of up to 2 pixels on the MNIST-like sets, for the consistency methods
# whose papers train with translations (Laine & Aila, Tarvainen & Valpola, Verma et al. and
# Berthelot et al. on SVHN, with flips added only on CIFAR).  A method's
# ``dataset_config_defaults``; --augment_translate=0 turns it off.  Without it the Pi-model,
# for one, ends worse than supervised on MNIST-100 (docs/results_mnist.md).
TRANSLATE_ON_MNIST = {"mnist": {"augment_translate": 2}, "fashion_mnist": {"augment_translate": 2}}


def sigmoid_rampup(step, rampup_steps):
    """exp(-5 (1 - t)^2) for t = step / rampup_steps in [0, 1] (Laine & Aila 2017)."""
    if rampup_steps <= 0:
        return tf.constant(1.0)
    t = tf.clip_by_value(tf.cast(step, tf.float32) / float(rampup_steps), 0.0, 1.0)
    return tf.exp(-5.0 * tf.square(1.0 - t))


def linear_rampup(step, rampup_steps):
    """min(1, step / rampup_steps) (1 when rampup_steps <= 0)."""
    if rampup_steps <= 0:
        return tf.constant(1.0)
    return tf.clip_by_value(tf.cast(step, tf.float32) / float(rampup_steps), 0.0, 1.0)


def rampup_steps(fraction, total_steps):
    return int(round(fraction * total_steps))


def consistency_squared_error(logits_a, logits_b):
    """Mean over the batch of (1/C) ||softmax(a) - softmax(b)||^2 (Laine & Aila; Tarvainen & Valpola)."""
    num_classes = tf.cast(tf.shape(logits_a)[-1], tf.float32)
    probs_a = tf.nn.softmax(tf.cast(logits_a, tf.float32))
    probs_b = tf.nn.softmax(tf.cast(logits_b, tf.float32))
    return tf.reduce_mean(losses.squared_error(probs_a, probs_b)) / num_classes


def confident_pseudo_labels(logits, threshold):
    """(labels, mask): argmax of the (gradient-free) prediction and 1[max p >= threshold]."""
    probs = tf.stop_gradient(tf.nn.softmax(tf.cast(logits, tf.float32)))
    labels = tf.argmax(probs, axis=-1)
    mask = tf.cast(tf.reduce_max(probs, axis=-1) >= threshold, tf.float32)
    return labels, mask


def scaled_for_update(optimizer, loss):
    """The loss a step differentiates: divided by the number of replicas (their summed gradients
    are then the single-device gradient of the global mean) and multiplied by the optimizer's
    loss scale (mixed_float16)."""
    return optimizer.scale_loss(losses.scale_for_replicas(loss))


def minimize(optimizer, variables, loss_fn):
    """One update of ``variables`` by ``optimizer`` on the scalar ``loss_fn()``, with
    the loss and distribution scaling of the base train_step; returns the loss."""
    with tf.GradientTape() as tape:
        loss = loss_fn()
        scaled_loss = scaled_for_update(optimizer, loss)
    gradients = tape.gradient(scaled_loss, variables)
    optimizer.apply_gradients(zip(gradients, variables))
    return loss


def adam(learning_rate, beta_1=0.9):
    """Adam, wrapped for loss scaling under the mixed_float16 policy."""
    optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def penultimate_features(classifier):
    """The input tensor of the classifier's last (logits) layer, flattened."""
    features = classifier.layers[-1].input
    if len(features.shape) > 2:
        features = keras.layers.Flatten()(features)
    return features
