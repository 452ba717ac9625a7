"""xAT and xVAT: adversarial training with multiplicative perturbations
(Yang et al., "Learning with Multiplicative Perturbations", ICPR 2020;
reference code sndnyang/xvat).

The additive x + r_adv of AT/VAT becomes a mask, x_adv = x * z, with z a
Hard Concrete sample (perturbations.hard_concrete_mask); with --x_center=c the
mask pulls inputs to c instead of 0, x_adv = c + (x - c) * z (perturbations.apply_mask;
c = 0.5 on [0, 1] pixels is the reference code's MNIST, whose pixels are centred to
[-0.5, 0.5], so a mask can erase strokes and also fill background; xVAT's MNIST
default, with the rest of the reference's transductive MNIST settings, XVATParams):

    z = min(1, max(0, sigmoid((log u - log(1 - u) + log_alpha) / beta) (zeta - gamma) + gamma)),  u ~ U(0, 1)

    xAT  (--method=xat):  D = CE(y, p(.|x * z))                  on labeled data (true label)
    xVAT (--method=xvat): D = KL(p(.|x) || p(.|x * z))           on the unlabeled stream, which
                          is the whole training set (D_l u D_u); p(.|x) held fixed
                          (--x_divergence=reverse_kl: D = KL(p(.|x * z) || p(.|x)), the
                          reference code's MNIST/CIFAR scripts, kl=1)
                          (--entmin, xVAT only: + E_{D_u}[ H(p(.|x)) ] for the classifier, as
                          VAT+EntMin; not in the xVAT paper)

    classifier:  min_theta      L_nll + x_weight * D
    log_alpha:   max_log_alpha  x_weight * D + l0_lambda * mean_j sigmoid(log_alpha_j - beta log(-gamma/zeta))  (eq. 12)

The second term of eq. 12 is the expected fraction of mask entries that are
not zero (the expected L0 norm divided by the number of entries P; the mean
instead of the sum, as the reference code, keeps l0_lambda independent of
the input size).  It enters with a plus sign: it rewards log_alpha for
keeping entries, while D rewards it for dropping them, so l0_lambda sets how
strong the perturbation may become.

Same-step updates (the method's speed claim): one forward pass on x * z and
ONE backward pass give the gradients of ``loss = L_nll + x_weight D +
l0_lambda L0`` for the classifier and for log_alpha together.  The classifier
descends it (the L0 term does not depend on theta); log_alpha ascends it
(gradient reversal: its gradient is negated before its own optimizer, as the
reference code's "one stage" update).  L_nll does not depend on log_alpha.

Where log_alpha comes from (--x_mode):
  inductive     a small network x -> log_alpha (two 3x3 convolutions for images,
                a 100-unit MLP for vectors), trained with Adam
                (--log_alpha_learning_rate); works on unseen inputs.
  transductive  a table with one row per training example, updated sparsely:
                the batch's rows are gathered, and the table's optimizer
                (--log_alpha_table_optimizer, --log_alpha_table_learning_rate)
                changes only those rows.  The gradient of each row is that of
                its own example's objective (the batch-mean gradient times the
                global batch size).  sgd: plain SGD on the IndexedSlices.
                adam: keras_workarounds.LazyAdam, Adam's moments kept per row and
                updated only for the batch's rows (triples the table's
                memory).  The per-entry gradients are tiny (the L0 term's is
                ~0.25 / P for P mask entries), so at a small rate SGD leaves the
                table where it started (MNIST at 1e-3: a trained table still had
                mean 0.0003 and std 1.0000 after 15 000 steps), whereas Adam's
                steps are ~lr per visit whatever the gradient's scale.  The
                reference code runs dense Adam over the whole table, which
                keeps moving each row through its momentum for ~10 steps after
                a visit: dense Adam at lr moves a visited row about as far as
                lazy Adam at 10 lr.
                xVAT addresses rows by the example index of the unlabeled
                stream.  The labeled stream carries no indices, so xAT addresses
                a labeled example's row by a hash of its (un-augmented) content
                into the same number of rows; two labeled examples that collide
                share a row (expected colliding pairs ~ num_labeled^2 / (2 N)).

Masks for images are per pixel and shared by the channels (log_alpha has
shape (H, W, 1), as the reference code); for vectors, per feature.

Hyper-parameters (paper / reference code): beta = 2/3, gamma = -0.1,
zeta = 1.1; x_weight 1; l0_lambda 1; log_alpha lr 1e-3 (Adam; the reference
code also uses Adam on its dense table: the table's SGD rate of 1.0 is ours,
a visited row moves ~0.05 per entry on Two Circles).
"""
from typing import ClassVar

import keras
import numpy as np
import tensorflow as tf

from tf_advssl import losses, perturbations
from tf_advssl.hparams.xvat import XParams, XVATParams
from tf_advssl.keras_workarounds import LazyAdam
from tf_advssl.layers import frozen_batch_stats
from tf_advssl.methods.base import SSLModel
from tf_advssl.methods.common import scaled_for_update


def mask_shape(data_shape) -> tuple:
    """Shape of one example's log alpha: (H, W, 1) for images, the input shape otherwise."""
    data_shape = tuple(int(d) for d in data_shape)
    return data_shape[:-1] + (1,) if len(data_shape) == 3 else data_shape


def log_alpha_initializer(init: float, init_std: float, seed: int):
    """Initial log alpha: ``init`` everywhere, or N(init, init_std^2) draws when ``init_std`` > 0."""
    if init_std > 0:
        return keras.initializers.RandomNormal(init, init_std, seed=seed)
    return keras.initializers.Constant(init)


def build_log_alpha_network(data_shape, init: float, seed: int = 0, init_std: float = 0.0) -> keras.Model:
    """The inductive map x -> log alpha (float32): conv 3x3 4 + ReLU, conv 3x3 1
    for images; Dense 100 + ReLU, Dense for vectors. The output bias starts at ``init``
    (drawn N(init, init_std^2) per entry when ``init_std`` > 0)."""
    data_shape = tuple(int(d) for d in data_shape)
    out_shape = mask_shape(data_shape)
    bias = log_alpha_initializer(init, init_std, seed + 2)
    inputs = keras.Input(data_shape)
    if len(data_shape) == 3:
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", dtype="float32",
                                kernel_initializer=keras.initializers.HeNormal(seed))(inputs)
        log_alpha = keras.layers.Conv2D(1, 3, padding="same", bias_initializer=bias, dtype="float32",
                                        kernel_initializer=keras.initializers.GlorotNormal(seed + 1))(h)
    else:
        h = keras.layers.Flatten(dtype="float32")(inputs)
        h = keras.layers.Dense(100, activation="relu", dtype="float32",
                               kernel_initializer=keras.initializers.HeNormal(seed))(h)
        h = keras.layers.Dense(int(np.prod(out_shape)), bias_initializer=bias, dtype="float32",
                               kernel_initializer=keras.initializers.GlorotNormal(seed + 1))(h)
        log_alpha = keras.layers.Reshape(out_shape, dtype="float32")(h)
    return keras.Model(inputs, log_alpha, name="log_alpha_network")


def content_rows(x, weights, num_rows: int):
    """Row of each example of ``x`` in a table of ``num_rows``: an exact integer hash
    of its float32 bits (sum of bits * fixed weights < 2^16, mod num_rows)."""
    bits = tf.cast(tf.bitcast(tf.cast(x, tf.float32), tf.int32), tf.int64)
    bits = tf.reshape(bits, [tf.shape(bits)[0], -1])
    return tf.math.floormod(tf.reduce_sum(bits * weights, axis=1), num_rows)


class XVAT(SSLModel):
    """xVAT; :class:`XAT` changes the divergence to the labeled cross-entropy."""

    Params = XVATParams
    # MNIST: the reference code's transductive MNIST run (MLPSemi 1200-1200, batches 100 / 250,
    # Adam 1e-3 x 0.95 every 500 steps); flags still win.
    dataset_config_defaults = {"mnist": {"mlp_widths": (1200, 1200), "batch_size": 100, "unlabeled_batch_size": 250,
                                         "learning_rate": 1e-3, "lr_schedule": "exponential", "lr_decay_rate": 0.95}}
    loss_names = ("loss_nll", "loss_x", "loss_l0", "loss_entmin")
    uses_labels: ClassVar[bool] = False

    def __init__(self, classifier, params=None, **kwargs):
        super().__init__(classifier, params, **kwargs)
        params = self.params
        self.mask_shape = mask_shape(self.data_shape)
        self.transductive = params.x_mode == "transductive"
        self.log_alpha_table = None
        self.log_alpha_network = None
        if self.transductive:
            if self.num_train_examples <= 0:
                raise ValueError("--x_mode=transductive needs num_train_examples > 0")
            self.log_alpha_table = self.add_weight(
                shape=(self.num_train_examples,) + self.mask_shape, dtype="float32",
                initializer=log_alpha_initializer(params.log_alpha_init, params.log_alpha_init_std,
                                                  int(kwargs.get("seed", 0)) + 7),
                name="log_alpha_table")
            if params.log_alpha_table_optimizer == "adam":
                self.log_alpha_optimizer = LazyAdam(params.log_alpha_table_learning_rate)
            else:
                self.log_alpha_optimizer = keras.optimizers.SGD(params.log_alpha_table_learning_rate)
            self.hash_weights = np.random.RandomState(0).randint(
                1, 2 ** 16, size=int(np.prod(self.data_shape))).astype(np.int64)
        else:
            self.log_alpha_network = build_log_alpha_network(self.data_shape, params.log_alpha_init,
                                                             seed=int(kwargs.get("seed", 0)) + 7,
                                                             init_std=params.log_alpha_init_std)
            self.log_alpha_optimizer = keras.optimizers.Adam(params.log_alpha_learning_rate)
        self.log_alpha_optimizer.build(self.log_alpha_variables())

    def extra_optimizers(self):
        return [self.log_alpha_optimizer]

    def log_alpha_variables(self):
        if self.transductive:
            return [self.log_alpha_table]
        return self.log_alpha_network.trainable_variables

    def log_alpha(self, x, rows):
        """log alpha of a batch: table rows ``rows`` or the network of ``x``."""
        if self.transductive:
            return tf.gather(self.log_alpha_table.value, rows)
        return self.log_alpha_network(x, training=True)

    def hard_concrete(self):
        p = self.params
        return dict(beta=p.hard_concrete_beta, gamma=p.hard_concrete_gamma, zeta=p.hard_concrete_zeta)

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, rows):
        """Loss terms; ``rows`` are the table rows of the perturbed batch (transductive)."""
        logits_labeled = self.logits(x_labeled)
        x = x_labeled if self.uses_labels else x_unlabeled
        log_alpha = self.log_alpha(x, rows)
        z = perturbations.hard_concrete_mask(log_alpha, seed=self.seed_generator, **self.hard_concrete())
        with frozen_batch_stats():
            logits_masked = self.logits(perturbations.apply_mask(x, z, self.params.x_center))
            if self.uses_labels:
                divergence = losses.cross_entropy(y_labeled, logits_masked)
            else:
                # with --entmin the clean pass is also the entropy term's, so it keeps its gradient
                logits_clean = self.logits(x)
                target = tf.stop_gradient(logits_clean)
                if self.params.x_divergence == "reverse_kl":
                    divergence = losses.kl_divergence(logits_masked, target)
                else:
                    divergence = losses.kl_divergence(target, logits_masked)
        nonzero = perturbations.hard_concrete_nonzero_probability(log_alpha, **self.hard_concrete())
        terms = {"loss_nll": tf.reduce_mean(losses.cross_entropy(y_labeled, logits_labeled)),
                 "loss_x": tf.reduce_mean(divergence),
                 "loss_l0": tf.reduce_mean(nonzero)}
        if not self.uses_labels:  # logged even when off
            terms["loss_entmin"] = tf.reduce_mean(losses.entropy(
                logits_clean if self.params.entmin else tf.stop_gradient(logits_clean)))
        return terms

    def loss_weights(self):
        weights = {"loss_nll": 1.0, "loss_x": self.params.x_weight, "loss_l0": self.params.l0_lambda}
        if not self.uses_labels:
            weights["loss_entmin"] = 1.0 if self.params.entmin else 0.0
        return weights

    def example_views(self, x, indices):
        """x * z with the median mask (u = 1/2) of each example, and z itself."""
        log_alpha = self.log_alpha(x, self.table_rows(x, indices))
        z = perturbations.hard_concrete_mask(log_alpha, uniform=tf.fill(tf.shape(log_alpha), 0.5),
                                             **self.hard_concrete())
        x = tf.cast(x, tf.float32)
        return {"mask z\n(median)": z * tf.ones_like(x),
                "masked\nx * z": perturbations.apply_mask(x, z, self.params.x_center)}

    def table_rows(self, x_labeled, idx_unlabeled):
        if not self.transductive:
            return None
        if self.uses_labels:
            return content_rows(x_labeled, tf.constant(self.hash_weights), self.num_train_examples)
        return idx_unlabeled

    def train_step(self, data):
        (x_labeled, y_labeled), (x_unlabeled, idx_unlabeled) = data
        rows = self.table_rows(x_labeled, idx_unlabeled)
        if self.augment_inputs:
            x_labeled, x_unlabeled = self.augment(x_labeled), self.augment(x_unlabeled)
        classifier_variables = self.trainable_for_loss()
        alpha_variables = self.log_alpha_variables()
        with tf.GradientTape() as tape:
            terms = self.compute_losses(x_labeled, y_labeled, x_unlabeled, rows)
            weights = self.loss_weights()
            loss = tf.add_n([tf.cast(weights[name], tf.float32) * terms[name] for name in self.loss_names])
            scaled_loss = scaled_for_update(self.optimizer, loss)
        gradients = tape.gradient(scaled_loss, classifier_variables + alpha_variables)
        num_classifier = len(classifier_variables)
        self.optimizer.apply_gradients(zip(gradients[:num_classifier], classifier_variables))
        ascent = self.ascent_gradients(gradients[num_classifier:], rows)
        self.log_alpha_optimizer.apply_gradients(zip(ascent, alpha_variables))
        self.after_update()
        logs = {name: terms[name] for name in self.loss_names}
        logs["loss"] = loss
        return logs

    def ascent_gradients(self, gradients, rows):
        """Negated (gradient reversal), loss-scale-free gradients for log alpha; a
        non-finite gradient (mixed precision overflow) becomes a zero update."""
        unscale = 1.0 / self.optimizer.scale_loss(tf.constant(1.0, tf.float32))
        if self.transductive:
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            unscale = unscale * tf.cast(tf.shape(rows)[0] * replicas, tf.float32)
        result = []
        for gradient in gradients:
            if isinstance(gradient, tf.IndexedSlices):
                values = _finite_or_zero(-unscale * gradient.values)
                result.append(tf.IndexedSlices(values, gradient.indices, gradient.dense_shape))
            else:
                result.append(_finite_or_zero(-unscale * gradient))
        return result


class XAT(XVAT):
    """xAT: the divergence is the cross-entropy of the masked labeled batch (the MNIST
    defaults of xVAT do not apply: they were measured for xVAT only)."""

    Params = XParams
    dataset_config_defaults = {}
    loss_names = ("loss_nll", "loss_x", "loss_l0")
    uses_labels = True


def _finite_or_zero(values):
    return tf.where(tf.reduce_all(tf.math.is_finite(values)), values, tf.zeros_like(values))
