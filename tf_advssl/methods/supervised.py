"""Supervised baseline: cross-entropy on the labeled examples only.

    L = E_{(x, y) in D_l} [-log p(y | x)]
"""
from tf_advssl import losses
from tf_advssl.methods.base import SSLModel
import tensorflow as tf


class Supervised(SSLModel):
    loss_names = ("loss_nll",)

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
        logits = self.logits(x_labeled)
        return {"loss_nll": tf.reduce_mean(losses.cross_entropy(y_labeled, logits))}
