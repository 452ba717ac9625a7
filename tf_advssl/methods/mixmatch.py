"""MixMatch (Berthelot, Carlini, Goodfellow, Papernot, Oliver, Raffel; NeurIPS 2019).

    x^_b = g(x_b)                                         labeled batch, one augmentation
    u^_{b,k} = g_k(u_b), k = 1..K                         unlabeled batch, K augmentations
    q_b = Sharpen((1/K) sum_k p(. | u^_{b,k}), T)         guessed label, a constant (no gradient)
    Sharpen(p, T)_c = p_c^{1/T} / sum_j p_j^{1/T}
    W = Shuffle(Concat(X^, U^))                           X^ = (x^_b, one_hot(y_b)), U^ = (u^_{b,k}, q_b)
    X' = (MixUp(X^_i, W_i)),  U' = (MixUp(U^_i, W_{i + |X^|}))
    MixUp((x1, p1), (x2, p2)) = (l' x1 + (1 - l') x2, l' p1 + (1 - l') p2),
        l ~ Beta(alpha, alpha), l' = max(l, 1 - l)        (one l per example, as libml)
    L = L_X + lambda_U(t) * L_U
    L_X = E_{X'}[ -sum_c p_c log p_model(c | x) ]         "loss_nll"
    L_U = E_{U'}[ (1/C) || q - p_model(. | u) ||^2 ]      "loss_consistency"

The mixed labeled and unlabeled examples go through the network in one batch
(libml interleaves separate passes only to share batch-norm statistics); the
passes that guess labels do not update batch-norm statistics.

Hyper-parameters (paper): K = 2, T = 0.5, alpha = 0.75, lambda_U = 100
(75 for CIFAR-10 in its tuned runs), lambda_U ramped up linearly over the first
16 000 steps of 2^20, Adam lr 0.002, weight decay 0.02 (applied as 0.02 * lr,
decoupled), EMA 0.999 for evaluation, batch 64 + 64.  Here the ramp-up lasts
min(--mixmatch_rampup * --train_steps, --mixmatch_rampup_max_steps) = min(0.4 T, 16 384)
steps: the paper's at its length, and 40 % of shorter runs (the ramp-up of Oliver et al.
2018 and of the pseudo-label baseline).  A 1/64 share of a short run (47 of 3000 steps)
reaches lambda_U = 100 before the network predicts anything but its initial bias, and
the guesses lock onto one class (docs/defaults.md).  On data without augmentation (e.g. the 2-D synthetic sets) the
K views are identical, so the guess is the sharpened prediction itself.
"""
import keras
import tensorflow as tf

from tf_advssl import losses, perturbations
from tf_advssl.hparams.mixmatch import MixMatchParams
from tf_advssl.layers import frozen_batch_stats
from tf_advssl.methods.base import SSLModel
from tf_advssl.methods.common import TRANSLATE_ON_MNIST, linear_rampup


def sharpen(probs, temperature):
    """p^{1/T} / sum p^{1/T} along the last axis (computed from logs, in float32)."""
    log_probs = tf.math.log(tf.maximum(tf.cast(probs, tf.float32), 1e-30)) / temperature
    return tf.nn.softmax(log_probs, axis=-1)


def mixup_pairs(x, targets, permutation, lam):
    """MixUp of each row with row ``permutation[i]`` using l' = max(l, 1 - l) per row.

    Args:
      x: (n, ...) inputs; targets: (n, C) probability vectors.
      permutation: (n,) int; lam: (n,) mixing coefficients in [0, 1].
    Returns: (mixed x, mixed targets), float32.
    """
    lam = tf.maximum(tf.cast(lam, tf.float32), 1.0 - tf.cast(lam, tf.float32))
    lam_x = tf.reshape(lam, [-1] + [1] * (len(x.shape) - 1))
    return (perturbations.mixup(x, tf.gather(x, permutation), lam_x),
            perturbations.mixup(targets, tf.gather(targets, permutation), lam[:, None]))


def rampup_steps(params, total_steps: int) -> int:
    """Steps over which lambda_U rises linearly: min(mixmatch_rampup * total_steps, the cap)."""
    return min(int(round(params.mixmatch_rampup * total_steps)), int(params.mixmatch_rampup_max_steps))


class MixMatch(SSLModel):
    Params = MixMatchParams
    loss_names = ("loss_nll", "loss_consistency")
    augment_inputs = False
    config_defaults = {"batch_size": 64, "unlabeled_batch_size": 64}  # Berthelot et al.: B = 64
    dataset_config_defaults = TRANSLATE_ON_MNIST

    def guess_labels(self, unlabeled_views):
        """Sharpened mean prediction over the K views; a constant (no gradient)."""
        with frozen_batch_stats():
            probs = [tf.nn.softmax(tf.cast(self.logits(view), tf.float32)) for view in unlabeled_views]
        return tf.stop_gradient(sharpen(tf.add_n(probs) / len(probs), self.params.mixmatch_temperature))

    def mixup_draws(self, n):
        """(permutation, lam): a random shuffle of n rows and n draws of Beta(alpha, alpha)."""
        permutation = keras.random.shuffle(tf.range(n), seed=self.seed_generator)
        lam = perturbations.sample_beta(self.params.mixmatch_alpha, seed=self.seed_generator, shape=(n,))
        return permutation, lam

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
        x_labeled = tf.cast(self.augment(x_labeled), tf.float32)
        views = [tf.cast(self.augment(x_unlabeled), tf.float32) for _ in range(self.params.mixmatch_k)]
        guess = self.guess_labels(views)
        num_labeled = tf.shape(x_labeled)[0]
        x_all = tf.concat([x_labeled] + views, axis=0)
        targets = tf.concat([tf.one_hot(y_labeled, self.num_classes)] + [guess] * len(views), axis=0)
        permutation, lam = self.mixup_draws(tf.shape(x_all)[0])
        x_mixed, targets_mixed = mixup_pairs(x_all, targets, permutation, lam)
        logits = tf.cast(self.logits(x_mixed), tf.float32)
        probs_unlabeled = tf.nn.softmax(logits[num_labeled:])
        return {
            "loss_nll": tf.reduce_mean(losses.soft_cross_entropy(targets_mixed[:num_labeled], logits[:num_labeled])),
            "loss_consistency": tf.reduce_mean(losses.squared_error(targets_mixed[num_labeled:], probs_unlabeled))
                                / float(self.num_classes),
        }

    def loss_weights(self):
        ramp = linear_rampup(self.step, rampup_steps(self.params, self.total_steps))
        return {"loss_nll": 1.0, "loss_consistency": self.params.mixmatch_weight * ramp}
