"""Mean teacher (Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017).

The target is the prediction of a teacher whose weights are an exponential
moving average of the student's; student and teacher see independent random
views (augmentation, Gaussian input noise, dropout) of the same example:

    theta'_t = a theta'_{t-1} + (1 - a) theta_t          teacher (EMA of the student, after each step)
    L = E_{D_l}[ -log p(y | g(x); theta) ]
        + w(t) * E_{D_u}[ (1/C) || p(. | g(x); theta) - p(. | g'(x); theta') ||^2 ]
    w(t) = w_max * exp(-5 (1 - t/T)^2) for t < T, w_max afterwards

The teacher gets no gradient; its batch-norm statistics are EMA copies too.
Evaluate (and export) the teacher, as the paper reports, with --eval_ema.

Hyper-parameters (paper and its TensorFlow reference code, CIFAR-10 ConvNet):
maximum consistency cost 100 with the squared error averaged over classes
(the code's SVHN runs use 50), ramp-up over the first 40000 of 150000 steps
(--mt_rampup 0.267), EMA decay 0.99 during the ramp-up (--mt_rampup_ema_decay)
and 0.999 afterwards (--ema_decay), Gaussian input noise 0.15, dropout 0.5,
Adam lr 0.003.  The consistency term also covers the labeled examples (D_u is
the whole training set).
"""
import tensorflow as tf

from tf_advssl import losses
from tf_advssl.hparams.mean_teacher import MeanTeacherParams
from tf_advssl.layers import frozen_batch_stats
from tf_advssl.methods.base import SSLModel
from tf_advssl.methods.common import TRANSLATE_ON_MNIST, consistency_squared_error, rampup_steps, sigmoid_rampup
from tf_advssl.methods.pi_model import PiModel


class MeanTeacher(SSLModel):
    Params = MeanTeacherParams
    loss_names = ("loss_nll", "loss_consistency")
    augment_inputs = False
    needs_teacher = True
    dataset_config_defaults = TRANSLATE_ON_MNIST
    stochastic_view = PiModel.stochastic_view

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
        logits_labeled, logits_student = self.student_passes(self.stochastic_view(x_labeled),
                                                             self.stochastic_view(x_unlabeled))
        with frozen_batch_stats():
            logits_teacher = self.teacher_logits(self.stochastic_view(x_unlabeled))
        return {"loss_nll": tf.reduce_mean(losses.cross_entropy(y_labeled, logits_labeled)),
                "loss_consistency": consistency_squared_error(logits_student, logits_teacher)}

    def loss_weights(self):
        ramp = sigmoid_rampup(self.step, self._rampup_steps())
        return {"loss_nll": 1.0, "loss_consistency": self.params.mt_weight * ramp}

    def teacher_decay(self):
        in_rampup = tf.cast(self.step, tf.float32) < float(self._rampup_steps())
        decay = tf.where(in_rampup, self.params.mt_rampup_ema_decay, self.ema_decay)
        step = tf.cast(self.step, tf.float32)
        return tf.minimum(decay, (1.0 + step) / (10.0 + step))

    def _rampup_steps(self):
        return rampup_steps(self.params.mt_rampup, self.total_steps)
