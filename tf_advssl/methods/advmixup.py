"""AdvMixup (Ma, Mao, Chen, Li; "Mixing Up Real Samples and Adversarial Samples
for Semi-Supervised Learning", IJCNN / WCCI 2020; reference code
sunlight-ym/AdvMixup) and ICT (Verma et al., "Interpolation Consistency
Training for Semi-Supervised Learning", IJCAI 2019) as its real-real variant.

    x_hat = lam * x_i + (1 - lam) * x_j^adv,      lam ~ Beta(alpha, alpha), one per batch
    y_hat = lam * f_t(x_i) + (1 - lam) * f_t(x_j)  (teacher predictions on the clean inputs)
    x_j^adv = x_j + r_j,  r_j = argmax_{||r||_2 <= eps} D[f_t(x_j), f(x_j + r)]   (VAT power iteration)
    L = L_nll + beta(t) * E_{x_i, x_j ~ S_u}[ D(y_hat, f(x_hat)) ],  beta(t) = mixup_weight * sigmoid ramp-up

f is the student, f_t its mean teacher (EMA of the student weights, decay
--ema_decay, no gradient).  The teacher normalises with the batch's
statistics, as the reference implementations that run the EMA model in
training mode (with its lagging moving statistics instead, ICT's targets
made the batch-norm MLP on MNIST worse than supervised).  The teacher
supplies the target of the adversarial direction: r_j is the student's VAT
direction against the teacher's clean prediction, as in the seed's equation
and the reference code.  j runs over a random permutation of the unlabeled
batch (the whole training set), and D is the squared error of probabilities
(mse) or KL(y_hat || f(x_hat)).

--mixup_pairs chooses the ends of the interpolation paths:
    real_adv  lam x_i + (1 - lam) x_j^adv        AdvMixup (default of --method=advmixup)
    real_real lam x_i + (1 - lam) x_j            ICT (--method=ict)
    adv_adv   lam x_i^adv + (1 - lam) x_j^adv
The targets are always the teacher's predictions on the clean x_i, x_j.

Batch norm: by default (--joint_batch) the student sees the labeled rows and the
mixed rows in one forward pass, so both are normalised with the same batch
statistics; that pass updates the moving statistics, the teacher's pass and the
power iteration do not.  The ICT reference code (vikasverma1077/ICT, CNNs on
CIFAR-10/SVHN) runs the labeled and the mixed batch through the student
separately (--joint_batch=false here).  With separate passes the batch-norm MLP
on MNIST-100 memorises the labels under the statistics of its labeled batches
and ICT ends at 43.67 % after 3000 steps (supervised 19.24 %); with the joint
pass 8.13 % (docs/methods.md).
After training, ``write_artifacts`` writes the seed's
interpolation-path analysis (error along real-real and real-adversarial
paths, by lam) as ``interpolation_paths.csv`` and ``.png``.

Hyper-parameters: alpha = 1 (ICT: 1.0 CIFAR-10, 0.1 SVHN); ema_decay 0.999;
eps as VAT's (--vat_eps); AdvMixup uses KL with weight 1 (reference code),
ICT the squared error with weight 10 (CIFAR-10; 100 on SVHN); sigmoid
ramp-up over the first quarter of training.
"""
import os

import keras
import tensorflow as tf

from tf_advssl import losses, perturbations
from tf_advssl.hparams.advmixup import AdvMixupParams, ICTParams
from tf_advssl.layers import frozen_batch_stats
from tf_advssl.methods.base import SSLModel
from tf_advssl.methods.common import TRANSLATE_ON_MNIST, rampup_steps, sigmoid_rampup


def consistency(divergence: str, target_probs, logits):
    """Per-example D(target, softmax(logits)): squared error or KL(target || p)."""
    target_probs = tf.cast(target_probs, tf.float32)
    if divergence == "mse":
        return losses.squared_error(target_probs, tf.nn.softmax(tf.cast(logits, tf.float32)))
    neg_entropy = tf.reduce_sum(tf.math.xlogy(target_probs, target_probs), axis=-1)
    return losses.soft_cross_entropy(target_probs, logits) + neg_entropy


class AdvMixup(SSLModel):
    Params = AdvMixupParams
    loss_names = ("loss_nll", "loss_mixup")
    needs_teacher = True
    dataset_config_defaults = TRANSLATE_ON_MNIST

    # ----- random draws (methods, so tests can fix them) ----------------------------
    def mixup_lambda(self):
        return perturbations.sample_beta(self.params.mixup_alpha, seed=self.seed_generator)

    def mixup_permutation(self, batch_size):
        return keras.random.shuffle(tf.range(batch_size), seed=self.seed_generator)

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
        p = self.params
        logits_teacher = self.teacher_logits(x_unlabeled)
        probs_teacher = tf.nn.softmax(tf.cast(logits_teacher, tf.float32))
        x_real = tf.cast(x_unlabeled, tf.float32)
        x_adv = x_real
        if p.mixup_pairs != "real_real":
            x_adv = x_real + perturbations.vat_perturbation(
                self.logits, x_real, logits_teacher, xi=p.vat_xi, eps=p.vat_eps, seed=self.seed_generator,
                compute_dtype=self.classifier.compute_dtype)
        lam = self.mixup_lambda()
        permutation = self.mixup_permutation(tf.shape(x_real)[0])
        first = x_adv if p.mixup_pairs == "adv_adv" else x_real
        second = x_real if p.mixup_pairs == "real_real" else x_adv
        x_mixed = perturbations.mixup(first, tf.gather(second, permutation), lam)
        y_mixed = perturbations.mixup(probs_teacher, tf.gather(probs_teacher, permutation), lam)
        logits_labeled, logits_mixed = self.student_logits(x_labeled, x_mixed)
        return {"loss_nll": tf.reduce_mean(losses.cross_entropy(y_labeled, logits_labeled)),
                "loss_mixup": tf.reduce_mean(consistency(p.mixup_divergence, y_mixed, logits_mixed))}

    def student_logits(self, x_labeled, x_mixed):
        """The student's logits on the labeled and the mixed rows (one pass with --joint_batch)."""
        if self.params.joint_batch:
            return self.joint_logits(x_labeled, x_mixed)
        logits_labeled = self.logits(x_labeled)
        with frozen_batch_stats():
            return logits_labeled, self.logits(x_mixed)

    def loss_weights(self):
        return {"loss_nll": 1.0,
                "loss_mixup": self.params.mixup_weight * sigmoid_rampup(self.step, rampup_steps(self.params.mixup_rampup, self.total_steps))}

    def example_views(self, x, indices):
        """The mixture 0.5 x_i + 0.5 x_j^(adv) (AdvMixup) or 0.5 x_i + 0.5 x_j (ICT) with j = i - 1."""
        p = self.params
        x = tf.cast(x, tf.float32)
        partner = tf.roll(x, 1, axis=0)
        if p.mixup_pairs != "real_real":
            logits_fn = lambda v: self.classifier(v, training=False)
            partner = partner + perturbations.vat_perturbation(
                logits_fn, partner, logits_fn(partner), xi=0.0, eps=p.vat_eps, initial_direction=tf.ones_like(x))
        first = x
        if p.mixup_pairs == "adv_adv":
            first = tf.roll(partner, -1, axis=0)
        return {f"{p.mixup_pairs} mixture\n(lam 0.5)": perturbations.mixup(first, partner, 0.5)}

    def write_artifacts(self, workdir, data):
        """The interpolation-path table and plot of the trained model on the test set."""
        from tf_advssl import analysis, plotting

        eps = self.params.vat_eps if self.params.vat_eps > 0 else 1.0
        result = analysis.interpolation_path_errors(
            lambda x: self(x, training=False), data.preprocessor(tf.constant(data.x_test[:1000])),
            data.y_test[:1000], eps=eps, xi=self.params.vat_xi, compute_dtype=self.classifier.compute_dtype)
        analysis.write_table(result, os.path.join(workdir, "interpolation_paths.csv"))
        plotting.interpolation_path_figure(result, os.path.join(workdir, "interpolation_paths.png"))


class ICT(AdvMixup):
    """Interpolation consistency training: AdvMixup with real-real pairs."""

    Params = ICTParams
