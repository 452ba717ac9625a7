"""Pseudo-Label (Lee, "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning
Method for Deep Neural Networks", ICML 2013 Workshop on Challenges in Representation Learning).

Unlabeled examples are trained on the class the network currently predicts
for them, a hard label recomputed at every step and held fixed (no gradient
through the argmax):

    y'_i = argmax_k p(k | x_i)             for x_i in D_u
    m_i  = 1[max_k p(k | x_i) >= tau]      confident predictions only
    L = E_{D_l}[ -log p(y | x) ] + alpha(t) * E_{D_u}[ m_i * (-log p(y'_i | x_i)) ]
    alpha(t) = alpha_f * min(1, t / T)     linear warm-up

Lee's paper uses every unlabeled example (tau = 0) with alpha_f = 3 and a
warm-up from epoch 100 to 600.  The defaults here are the confident-prediction
variant that the later comparisons report as "Pseudo-Label" (Oliver et al.,
"Realistic Evaluation of Deep Semi-Supervised Learning Algorithms", NeurIPS
2018; google-research/fixmatch libml): tau = 0.95, alpha_f = 1, warm-up over
the first 40 % of training.  ``--pseudo_label_threshold=0 --pseudo_label_weight=3``
gives Lee's loss.
"""
import tensorflow as tf

from tf_advssl import losses
from tf_advssl.hparams.pseudo_label import PseudoLabelParams
from tf_advssl.methods.base import SSLModel
from tf_advssl.methods.common import confident_pseudo_labels, linear_rampup


class PseudoLabel(SSLModel):
    Params = PseudoLabelParams
    loss_names = ("loss_nll", "loss_pseudo_label")

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
        logits_labeled, logits_unlabeled = self.student_passes(x_labeled, x_unlabeled)
        pseudo_labels, mask = confident_pseudo_labels(logits_unlabeled, self.params.pseudo_label_threshold)
        return {"loss_nll": tf.reduce_mean(losses.cross_entropy(y_labeled, logits_labeled)),
                "loss_pseudo_label": tf.reduce_mean(mask * losses.cross_entropy(pseudo_labels, logits_unlabeled))}

    def loss_weights(self):
        ramp = linear_rampup(self.step, int(round(self.params.pseudo_label_rampup * self.total_steps)))
        return {"loss_nll": 1.0, "loss_pseudo_label": self.params.pseudo_label_weight * ramp}
