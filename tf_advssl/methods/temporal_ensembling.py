"""Temporal ensembling (Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017).

The target of each training example is an exponential moving average of the
network's past predictions on it, with a bias correction for the zero start:

    z_i = softmax(f(g(x_i)))                       one stochastic pass (augmentation, noise, dropout)
    Z_i <- alpha Z_i + (1 - alpha) z_i              after each visit of example i, Z_i = 0 at first
    z~_i = Z_i / (1 - alpha^{t_i})                  t_i = number of visits of example i so far
    L = E_{D_l}[ -log z_{i, y_i} ] + w(t) * E_{D_u}[ (1/C) || z_i - z~_i ||^2 ]

The paper accumulates Z once per epoch; the input pipeline visits every
training example once per epoch, so updating row i at each visit (indexed by
the example index the pipeline carries) is the same ensemble.  Examples not
yet visited (t_i = 0) have no target and contribute 0 to the consistency
term.  The target z~ is a constant (no gradient); the update of Z uses this
step's predictions before the optimizer step.

Hyper-parameters (paper): alpha = 0.6, w_max = 30, ramp-up over the first 80
of 300 epochs, Gaussian input noise 0.15, dropout 0.5, Adam lr 0.003, batch
100.  As for the Pi-model, the paper's w_max * M/N with a batch-size-normalised
supervised sum equals w_max with the labeled mean used here.
"""
import tensorflow as tf

from tf_advssl import distribution, losses
from tf_advssl.hparams.temporal_ensembling import TemporalEnsemblingParams
from tf_advssl.methods.base import SSLModel
from tf_advssl.methods.common import TRANSLATE_ON_MNIST, rampup_steps, sigmoid_rampup
from tf_advssl.methods.pi_model import PiModel


def bias_corrected_targets(ensemble, counts, alpha):
    """(targets, mask): Z / (1 - alpha^t) where t > 0, and the float mask t > 0."""
    counts = tf.cast(counts, tf.float32)
    seen = counts > 0
    correction = 1.0 - tf.pow(tf.constant(alpha, tf.float32), counts)
    targets = tf.where(seen[:, None], ensemble / tf.where(seen, correction, 1.0)[:, None], 0.0)
    return targets, tf.cast(seen, tf.float32)


class TemporalEnsembling(SSLModel):
    Params = TemporalEnsemblingParams
    loss_names = ("loss_nll", "loss_consistency")
    augment_inputs = False
    dataset_config_defaults = TRANSLATE_ON_MNIST
    stochastic_view = PiModel.stochastic_view

    def __init__(self, classifier, params=None, **kwargs):
        super().__init__(classifier, params, **kwargs)
        params = self.params
        if self.num_train_examples <= 0:
            raise ValueError("temporal_ensembling needs num_train_examples > 0 (its per-example table)")
        self.ensemble_predictions = self.add_weight(
            shape=(self.num_train_examples, self.num_classes), initializer="zeros", trainable=False,
            name="ensemble_predictions")
        self.ensemble_visits = self.add_weight(
            shape=(self.num_train_examples,), initializer="zeros", trainable=False, name="ensemble_visits")

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
        """The loss terms; also records this pass's predictions in the ensemble (side effect)."""
        logits_labeled, logits_unlabeled = self.student_passes(self.stochastic_view(x_labeled),
                                                               self.stochastic_view(x_unlabeled))
        probs = tf.nn.softmax(tf.cast(logits_unlabeled, tf.float32))
        targets, mask = bias_corrected_targets(tf.gather(self.ensemble_predictions, idx_unlabeled),
                                               tf.gather(self.ensemble_visits, idx_unlabeled),
                                               self.params.te_alpha)
        targets = tf.stop_gradient(targets)
        num_classes = tf.cast(tf.shape(probs)[-1], tf.float32)
        loss_consistency = tf.reduce_mean(mask * losses.squared_error(probs, targets)) / num_classes
        self.update_ensemble(idx_unlabeled, tf.stop_gradient(probs))
        return {"loss_nll": tf.reduce_mean(losses.cross_entropy(y_labeled, logits_labeled)),
                "loss_consistency": loss_consistency}

    def update_ensemble(self, idx, probs):
        """Z_i <- alpha Z_i + (1 - alpha) z_i for the examples ``idx`` (an index repeated
        within the batch counts once, with its mean prediction).  Under tf.distribute every
        replica applies the update of the whole global batch, so its copy of the table
        stays identical to the others'."""
        idx, probs = distribution.gather_replicas(idx), distribution.gather_replicas(probs)
        unique_idx, position = tf.unique(tf.cast(idx, tf.int64))
        mean_probs = tf.math.unsorted_segment_mean(probs, position, tf.size(unique_idx))
        alpha = self.params.te_alpha
        rows = unique_idx[:, None]
        ensemble = tf.gather(self.ensemble_predictions, unique_idx)
        self.ensemble_predictions.assign(tf.tensor_scatter_nd_update(
            self.ensemble_predictions, rows, alpha * ensemble + (1.0 - alpha) * mean_probs))
        self.ensemble_visits.assign(tf.tensor_scatter_nd_add(
            self.ensemble_visits, rows, tf.ones_like(unique_idx, tf.float32)))

    def loss_weights(self):
        ramp = sigmoid_rampup(self.step, rampup_steps(self.params.te_rampup, self.total_steps))
        return {"loss_nll": 1.0, "loss_consistency": self.params.te_weight * ramp}
