"""Per-example losses on logits.  Logits are cast to float32 first, so every
softmax, log-softmax and KL below runs in float32 under mixed precision."""
from __future__ import annotations

import tensorflow as tf


def _f32(x):
    return tf.cast(x, tf.float32)


def cross_entropy(labels, logits):
    """Per-example -log p(labels | x); ``labels`` int (batch,), logits (batch, classes)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=_f32(logits))


def soft_cross_entropy(targets, logits):
    """Per-example -sum_k targets_k log softmax(logits)_k; ``targets`` are probabilities."""
    return -tf.reduce_sum(_f32(targets) * tf.nn.log_softmax(_f32(logits)), axis=-1)


def kl_divergence(logits_p, logits_q):
    """Per-example KL(softmax(logits_p) || softmax(logits_q))."""
    logits_p, logits_q = _f32(logits_p), _f32(logits_q)
    log_p = tf.nn.log_softmax(logits_p)
    log_q = tf.nn.log_softmax(logits_q)
    return tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)


def entropy(logits):
    """Per-example conditional entropy H(p(y|x)) (VAT's EntMin term)."""
    log_p = tf.nn.log_softmax(_f32(logits))
    return -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)


def squared_error(probs_a, probs_b):
    """Per-example sum of squared differences of two probability vectors."""
    return tf.reduce_sum(tf.square(_f32(probs_a) - _f32(probs_b)), axis=-1)


def error_count(labels, logits):
    """Per-example 1.0 where argmax(logits) != labels."""
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int64)
    return tf.cast(tf.not_equal(predicted, tf.cast(labels, tf.int64)), tf.float32)


def scale_for_replicas(loss):
    """``loss / num_replicas_in_sync`` under a tf.distribute strategy with several replicas,
    else ``loss``: each replica's gradient of its slice's mean loss then sums (the
    optimizer's all-reduce) to the gradient of the global batch mean, as in Keras' own
    ``Model.train_step``."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return loss
    return loss * tf.cast(1.0 / replicas, loss.dtype)
