"""Networks of feature vectors (any input shape, flattened).

``mlp``
    Flatten, then ``Dense -> BN -> ReLU`` per hidden width, then
    ``Dense(num_classes)``.  Miyato et al., "Virtual Adversarial Training: A
    Regularization Method for Supervised and Semi-Supervised Learning", IEEE
    TPAMI 2018 (VAT), use 1200-600-300-150-150 on MNIST and 2-100-50-2 on the
    synthetic Two Moons / Two Circles sets.  Hidden ``Dense`` layers have no
    bias since BN's offset follows; optional dropout (``dropout > 0``) sits
    between hidden layers only.
``mlp_wn``
    The discriminator / classifier of Salimans et al., "Improved Techniques
    for Training GANs", NeurIPS 2016, on MNIST (official code
    ``openai/improved-gan``, ``mnist_svhn_cifar10/train_mnist_feature_matching.py``)::

        flatten, Gaussian noise (std input_noise = 0.3)
        per hidden width (1000-500-250-250-250):
            weight-normalised dense -> ReLU -> Gaussian noise (std hidden_noise = 0.5)
        weight-normalised dense num_classes (logits)

    No batch norm (a GAN discriminator sees labeled, unlabeled and generated
    batches in separate passes).  The noise is added in training only; in
    inference the network is deterministic.  Dense layers are
    :class:`tf_advssl.layers.WeightNormDense` (``w = g v / ||v||``, with a bias);
    as in the official code the hidden layers keep ``g`` fixed and only the
    logits layer learns it.  The official code's data-dependent initialisation
    (``g`` and the bias set so that each unit's pre-activation has mean 0 and
    std 1 on a first batch) is not done: ``v`` is He-normal and ``g = ||v||``, so
    the initial kernels are He-normal.  ``mlp_widths`` sets the hidden widths;
    ``dropout`` is ignored.  The logits layer is the model's last layer, its
    input the noisy post-ReLU activations of the last hidden layer (FM-GAN's
    feature matching uses those activations before the noise, as the official
    code).
"""
from __future__ import annotations

import keras

from tf_advssl.config import MLP_WIDTHS, NETWORK_DEFAULTS
from tf_advssl.layers import BatchNormalization, WeightNormDense
from tf_advssl.networks.common import Builder, VAT_BN_MOMENTUM, check_noise, check_widths, logits_layer


def build_mlp(input_shape, num_classes, *, mlp_widths=MLP_WIDTHS,
              dropout=0.0, seed=0, name_prefix=None, batch_norm=True, top_bn=False) -> keras.Model:
    """Flatten -> [Dense -> BN -> ReLU] per width (dropout between) -> Dense logits
    (-> BN with ``top_bn``).  Without ``batch_norm`` the hidden Dense layers have biases instead."""
    b = Builder(seed, name_prefix)
    widths = check_widths(mlp_widths)
    inputs = keras.Input(shape=tuple(input_shape), name=b.name("inputs"))
    h = keras.layers.Flatten(name=b.name("flatten"))(inputs)
    for i, width in enumerate(widths):
        # Without batch norm the first layer's biases start uniform in [-1, 1]: with zero
        # biases every ReLU kink of a low-dimensional input passes through the origin,
        # and the network can only draw rays there (Two Circles needs a circle).
        bias_init = (keras.initializers.RandomUniform(-1.0, 1.0, seed=b.seed()) if i == 0 and not batch_norm
                     else "zeros")
        h = keras.layers.Dense(width, use_bias=not batch_norm, kernel_initializer=b.he_normal(),
                               bias_initializer=bias_init, name=b.name(f"dense{i}"))(h)
        if batch_norm:
            h = BatchNormalization(momentum=VAT_BN_MOMENTUM, name=b.name(f"bn{i}"))(h)
        h = keras.layers.ReLU(name=b.name(f"relu{i}"))(h)
        if dropout > 0 and i < len(widths) - 1:
            h = keras.layers.Dropout(dropout, seed=b.seed(), name=b.name(f"dropout{i}"))(h)
    return keras.Model(inputs, logits_layer(h, num_classes, b, top_bn), name=b.name("mlp"))


# Salimans et al. 2016, MNIST (config.NETWORK_DEFAULTS fills the run's None fields with these).
MLP_WN_WIDTHS = tuple(NETWORK_DEFAULTS["mlp_wn"]["mlp_widths"])


MLP_WN_INPUT_NOISE = float(NETWORK_DEFAULTS["mlp_wn"]["mlp_wn_input_noise"])


MLP_WN_HIDDEN_NOISE = float(NETWORK_DEFAULTS["mlp_wn"]["mlp_wn_hidden_noise"])


def build_mlp_wn(input_shape, num_classes, *, mlp_widths=MLP_WN_WIDTHS, input_noise=MLP_WN_INPUT_NOISE,
                 hidden_noise=MLP_WN_HIDDEN_NOISE, seed=0, name_prefix=None, **_unused) -> keras.Model:
    """Flatten -> GaussianNoise(input_noise) -> [WeightNormDense -> ReLU -> GaussianNoise(hidden_noise)]
    per width -> WeightNormDense logits (float32, learned scale).  Noise layers with std 0 are
    left out; every noise layer has its own seed derived from ``seed``."""
    b = Builder(seed, name_prefix)
    widths = check_widths(mlp_widths)
    input_noise = check_noise(input_noise, "mlp_wn_input_noise")
    hidden_noise = check_noise(hidden_noise, "mlp_wn_hidden_noise")

    def noise(x, stddev, tag):
        if stddev == 0:
            return x
        return keras.layers.GaussianNoise(stddev, seed=b.seed(), name=b.name(tag))(x)

    inputs = keras.Input(shape=tuple(input_shape), name=b.name("inputs"))
    h = keras.layers.Flatten(name=b.name("flatten"))(inputs)
    h = noise(h, input_noise, "input_noise")
    for i, width in enumerate(widths):
        h = WeightNormDense(width, kernel_initializer=b.he_normal(), trainable_scale=False,
                            name=b.name(f"dense{i}"))(h)
        h = keras.layers.ReLU(name=b.name(f"relu{i}"))(h)
        h = noise(h, hidden_noise, f"noise{i}")
    logits = WeightNormDense(num_classes, kernel_initializer=b.he_normal(), dtype="float32",
                             name=b.name("logits"))(h)
    return keras.Model(inputs, logits, name=b.name("mlp_wn"))
