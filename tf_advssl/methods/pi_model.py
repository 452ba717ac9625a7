"""Pi-model (Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017).

Each example goes through the network twice, each time with its own random
augmentation, Gaussian input noise and dropout; the two predictions must agree:

    z_i, z~_i = f(g(x_i)), f(g'(x_i))                 two stochastic passes
    L = E_{D_l}[ -log softmax(z_i)_{y_i} ]
        + w(t) * E_{D_u}[ (1/C) || softmax(z_i) - softmax(z~_i) ||^2 ]
    w(t) = w_max * exp(-5 (1 - t/T)^2) for t < T, w_max afterwards   (sigmoid ramp-up)

D_u is the whole training set (labeled examples included, as in the paper).
In the paper both passes are trained (no stop-gradient); ``--pi_stop_gradient``
treats the second pass as a fixed target instead, as google-research/fixmatch
(libml) and Oliver et al. (2018) do.

Hyper-parameters (paper, CIFAR-10/SVHN): w_max = 100, ramp-up over the first
80 of 300 epochs (--pi_rampup 80/300 of --train_steps), Gaussian input noise
sigma = 0.15 (--input_noise), dropout 0.5 in the network, Adam with max
learning rate 0.003, batch 100.  The paper scales w_max by M/N (labeled
fraction) because its supervised term sums over the labeled members of a
mixed batch and divides by the batch size, i.e. is M/N times a labeled mean;
here the supervised term is the mean over a separate labeled batch, so the
equivalent weight is w_max itself.  On the 2-D synthetic sets the noise
defaults to 0.05 (the two circles are 0.2 apart).
"""
import keras
import tensorflow as tf

from tf_advssl import losses
from tf_advssl.hparams.pi_model import PiModelParams
from tf_advssl.layers import frozen_batch_stats
from tf_advssl.methods.base import SSLModel
from tf_advssl.methods.common import TRANSLATE_ON_MNIST, consistency_squared_error, rampup_steps, sigmoid_rampup


class PiModel(SSLModel):
    Params = PiModelParams
    loss_names = ("loss_nll", "loss_consistency")
    augment_inputs = False
    dataset_config_defaults = TRANSLATE_ON_MNIST

    def stochastic_view(self, x):
        """Random augmentation of ``x`` plus Gaussian noise of std ``input_noise``."""
        x = tf.cast(self.augment(x), tf.float32)
        if self.params.input_noise > 0:
            x = x + self.params.input_noise * keras.random.normal(tf.shape(x), seed=self.seed_generator)
        return x

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
        logits_labeled, logits_a = self.student_passes(self.stochastic_view(x_labeled),
                                                       self.stochastic_view(x_unlabeled))
        with frozen_batch_stats():
            logits_b = self.logits(self.stochastic_view(x_unlabeled))
        if self.params.pi_stop_gradient:
            logits_b = tf.stop_gradient(logits_b)
        return {"loss_nll": tf.reduce_mean(losses.cross_entropy(y_labeled, logits_labeled)),
                "loss_consistency": consistency_squared_error(logits_a, logits_b)}

    def loss_weights(self):
        ramp = sigmoid_rampup(self.step, rampup_steps(self.params.pi_rampup, self.total_steps))
        return {"loss_nll": 1.0, "loss_consistency": self.params.pi_weight * ramp}
