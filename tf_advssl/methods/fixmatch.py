"""FixMatch (Sohn, Berthelot, Li, Zhang, Carlini, Cubuk, Kurakin, Zhang, Raffel; NeurIPS 2020).

The prediction on a weakly augmented view becomes a hard pseudo-label when it
is confident, and the prediction on a strongly augmented view of the same
example is trained on it:

    q_b = p(. | alpha(u_b))                     weak view, a constant (no gradient)
    m_b = 1[max q_b >= tau]
    l_s = E_{D_l}[ -log p(y | alpha(x)) ]                                  "loss_nll"
    l_u = (1 / (mu B)) sum_b m_b * (-log p(argmax q_b | A(u_b)))           "loss_pseudo_label"
    L = l_s + lambda_u l_u
    A = RandAugment (2 random operations) followed by Cutout

Labeled, weak and strong batches go through the network in one pass.  The
weak augmentation alpha is the run's flip + translate (--augment_flip,
--augment_translate; the paper translates by up to 12.5 %, e.g.
--augment_translate=4 on 32x32 images; MNIST's default here is none).

Strong augmentation here is Keras 3 ``keras.layers.RandAugment`` plus
:func:`random_cutout`.  Limitations of that layer, and what is done about them:
* it assumes inputs in a fixed value range (``--fixmatch_value_min/max``,
  default [0, 1] = images scaled by 1/255): its photometric operations clip to
  that range.  On ZCA-whitened inputs (CIFAR's default here) they are not
  meaningful; run FixMatch with ``--nozca`` as the paper does (per-channel
  normalisation only);
* it draws the operations once per batch (the paper draws them per image);
  the magnitudes are drawn per image;
* it scales rotation, shear and translation by the same factor as the
  photometric operations (rotation up to factor * 360 degrees), so those three
  are replaced by layers with FixMatch's ranges (rotation +-30 degrees, shear
  +-0.3, translation +-30 %; Sohn et al., Table 12).
Cutout blanks one square per image with a side drawn uniformly in
[0, ``fixmatch_cutout``] of the image size, filled with the middle of the
value range (the paper's grey).  For feature vectors (e.g. the 2-D synthetic
sets) the strong augmentation is additive Gaussian noise of std
``--fixmatch_vector_noise`` (an extension; the paper is images only).

Hyper-parameters (paper): tau = 0.95, lambda_u = 1, mu = 7 unlabeled examples
per labeled one, B = 64: the default batch sizes of ``--method=fixmatch`` are
64 labeled and 448 unlabeled (flags override them).  SGD
with Nesterov momentum 0.9, lr 0.03 with cosine decay, weight decay 5e-4,
EMA 0.999 of the weights for evaluation.
"""
import keras
import tensorflow as tf

from tf_advssl import losses
from tf_advssl.hparams.fixmatch import FixMatchParams
from tf_advssl.keras_workarounds import narrowed_randaugment
from tf_advssl.methods.base import SSLModel
from tf_advssl.methods.common import confident_pseudo_labels

FIXMATCH_ROTATION_DEGREES = 30.0
FIXMATCH_SHEAR = 0.3
FIXMATCH_TRANSLATION = 0.3


def cutout(images, sizes, centers, fill_value):
    """Blank one square per image.

    Args:
      images: (n, H, W, C).
      sizes: (n,) side of each square in pixels (float; a pixel is inside when
        its centre is within sizes/2 of the square's centre in both axes).
      centers: (n, 2) (row, column) of each square's centre in pixels.
      fill_value: value written inside the squares.
    """
    images = tf.cast(images, tf.float32)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    rows = tf.cast(tf.range(height), tf.float32)[None, :, None]
    cols = tf.cast(tf.range(width), tf.float32)[None, None, :]
    half = tf.cast(sizes, tf.float32)[:, None, None] / 2.0
    centers = tf.cast(centers, tf.float32)
    inside = tf.logical_and(tf.abs(rows - centers[:, 0, None, None]) < half,
                            tf.abs(cols - centers[:, 1, None, None]) < half)
    return tf.where(inside[..., None], tf.cast(fill_value, tf.float32), images)


def random_cutout(images, max_fraction, fill_value, seed):
    """:func:`cutout` with sides uniform in [0, max_fraction * min(H, W)] and uniform centres."""
    shape = tf.shape(images)
    n = shape[0]
    extent = tf.cast(tf.minimum(shape[1], shape[2]), tf.float32)
    sizes = keras.random.uniform((n,), 0.0, max_fraction, seed=seed) * extent
    centers = keras.random.uniform((n, 2), 0.0, 1.0, seed=seed) * tf.cast(shape[1:3], tf.float32)[None, :]
    return cutout(images, sizes, centers, fill_value)


def build_randaugment(value_range, num_ops, magnitude, seed):
    """Keras RandAugment with rotation, shear and translation narrowed to FixMatch's ranges."""
    return narrowed_randaugment(value_range, num_ops, magnitude, seed, rotation_degrees=FIXMATCH_ROTATION_DEGREES,
                                shear=FIXMATCH_SHEAR, translation=FIXMATCH_TRANSLATION)


class FixMatch(SSLModel):
    Params = FixMatchParams
    loss_names = ("loss_nll", "loss_pseudo_label")
    augment_inputs = False
    config_defaults = {"batch_size": 64, "unlabeled_batch_size": 448}  # B = 64, mu = 7

    def __init__(self, classifier, params=None, *, seed: int = 0, **kwargs):
        super().__init__(classifier, params, seed=seed, **kwargs)
        params = self.params
        self.is_image = len(self.data_shape) == 3
        self.randaugment = None
        if self.is_image and params.fixmatch_randaugment_ops > 0:
            self.randaugment = build_randaugment(
                (params.fixmatch_value_min, params.fixmatch_value_max), params.fixmatch_randaugment_ops,
                params.fixmatch_randaugment_magnitude, seed=seed + 7919)

    def strong_augment(self, x):
        """A(x): weak augmentation, then RandAugment and Cutout (images) or Gaussian noise (vectors)."""
        x = tf.cast(self.augment(x), tf.float32)
        p = self.params
        if not self.is_image:
            return x + p.fixmatch_vector_noise * keras.random.normal(tf.shape(x), seed=self.seed_generator)
        if self.randaugment is not None:
            x = tf.cast(self.randaugment(x, training=True), tf.float32)
        if p.fixmatch_cutout > 0:
            x = random_cutout(x, p.fixmatch_cutout, 0.5 * (p.fixmatch_value_min + p.fixmatch_value_max),
                              self.seed_generator)
        return x

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
        x_weak_labeled = tf.cast(self.augment(x_labeled), tf.float32)
        x_weak = tf.cast(self.augment(x_unlabeled), tf.float32)
        x_strong = self.strong_augment(x_unlabeled)
        logits = self.logits(tf.concat([x_weak_labeled, x_weak, x_strong], axis=0))
        logits_labeled, logits_weak, logits_strong = tf.split(
            logits, [tf.shape(x_labeled)[0], tf.shape(x_unlabeled)[0], tf.shape(x_unlabeled)[0]])
        pseudo_labels, mask = confident_pseudo_labels(logits_weak, self.params.fixmatch_threshold)
        return {"loss_nll": tf.reduce_mean(losses.cross_entropy(y_labeled, logits_labeled)),
                "loss_pseudo_label": tf.reduce_mean(mask * losses.cross_entropy(pseudo_labels, logits_strong))}

    def loss_weights(self):
        return {"loss_nll": 1.0, "loss_pseudo_label": self.params.fixmatch_weight}
