"""Adversarial training (Goodfellow, Shlens, Szegedy; ICLR 2015), on labeled data.

    L~(x, y) = alpha * L(x, y) + (1 - alpha) * L(x + r_adv, y)
    r_adv = eps * sign(grad_x L(x, y))          (--at_norm=linf: FGSM)
    r_adv = eps * grad_x L / ||grad_x L||_2     (--at_norm=l2: FGM, Miyato et al. 2017)

The gradient direction is held fixed (no gradient through r_adv), and the
forward pass on x + r_adv does not update batch-norm moving statistics.
"""
import tensorflow as tf

from tf_advssl import losses, perturbations
from tf_advssl.hparams.at import ATParams
from tf_advssl.layers import frozen_batch_stats
from tf_advssl.methods.base import SSLModel


class AdversarialTraining(SSLModel):
    Params = ATParams
    loss_names = ("loss_nll", "loss_adv")

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
        logits = self.logits(x_labeled)
        x_adv = perturbations.gradient_step(
            lambda x: tf.reduce_sum(losses.cross_entropy(y_labeled, self.logits(x))),
            x_labeled, self.params.at_eps, self.params.at_norm)
        with frozen_batch_stats():
            logits_adv = self.logits(x_adv)
        return {"loss_nll": tf.reduce_mean(losses.cross_entropy(y_labeled, logits)),
                "loss_adv": tf.reduce_mean(losses.cross_entropy(y_labeled, logits_adv))}

    def loss_weights(self):
        return {"loss_nll": self.params.at_alpha, "loss_adv": 1.0 - self.params.at_alpha}
