"""Feature-matching GAN for semi-supervised learning (Salimans, Goodfellow, Zaremba,
Cheung, Radford, Chen; "Improved Techniques for Training GANs", NeurIPS 2016,
"Improved GAN" in the seeds' tables).

The classifier is a (K+1)-class discriminator whose extra "generated" logit is
fixed to 0, so its K logits l(x) are all that is stored, evaluated and exported:

    p(y = k | x) = exp(l_k) / (1 + sum_j exp(l_j)),   D(x) = Z(x) / (Z(x) + 1),  Z(x) = sum_k exp(l_k)
    L_D = E_{D_l}[ -log softmax(l(x))_y ]                                         "loss_nll"
        + w * ( E_{D_u}[ -log D(x) ] + E_z[ -log(1 - D(G(z))) ] )              "loss_unlabeled"
          with -log D(x) = softplus(lse(l(x))) - lse(l(x)),  -log(1 - D(x)) = softplus(lse(l(x)))
    L_G = mean_f ( E_{D_u}[ f(x) ] - E_z[ f(G(z)) ] )^2                           "loss_feature_matching"

where lse is log-sum-exp and f the discriminator's penultimate features: the
input of its logits layer, or, when that input is Gaussian noise (``mlp_wn``),
the activations before that noise (the official MNIST code matches the output
of the last hidden layer, ``layers[-3]``, in its noisy training mode).  Each
train_step makes one discriminator update (the run's optimizer) on labeled,
unlabeled and generated batches, then one generator update by feature matching
with fresh noise (Adam, beta_1 = 0.5).  Generated samples get no gradient in the
discriminator update, the discriminator none in the generator update.

Design: the discriminator is the network chosen by --network.  On mnist and
fashion_mnist it defaults to ``mlp_wn`` (``dataset_config_defaults``), the
paper's MNIST discriminator: Gaussian noise 0.3 on the input, weight-normalised
dense layers 1000-500-250-250-250 with ReLU each followed by Gaussian noise 0.5,
weight-normalised logits, no batch norm (see ``tf_advssl/networks.py``;
--mlp_wn_input_noise, --mlp_wn_hidden_noise).  With another network (e.g. an
explicit --network=mlp, batch-normalised) FM-GAN adds the input noise itself:
--fm_gan_input_noise, 0.3 on MNIST as in the paper.  With ``mlp_wn`` that
default is 0 (``FMGANParams.NETWORK_DEFAULTS``), so the input noise is not
added twice; an explicit --fm_gan_input_noise still applies.  Generators:
``mlp`` (the paper's MNIST generator: z in U[0, 1]^100 -> 500 -> 500 with
batch norm and softplus, weight-normalised output layer) and ``conv`` for
images whose sides divide by 4 (DCGAN-like: dense -> (H/4, W/4, 256) ->
transposed convs 5x5 stride 2 to 128 channels and to the image, batch norm and
ReLU in between; the paper's CIFAR generator has one more stage).  The
generator's output is sigmoid for MNIST-like sets (model space [0, 1]) and
linear otherwise (--fm_gan_output).

Hyper-parameters (paper/official code, MNIST): Adam lr 0.003 with beta_1 0.5
for both networks, batch 100; on MNIST-like sets the run defaults to lr 0.003 and
batches of 100 labeled and 100 unlabeled examples (``dataset_config_defaults``;
beta_1 0.5 for the discriminator is --momentum=0.5, not a default), the unlabeled term weighted 0.5 in the official
code (--fm_gan_unlabeled_weight; the paper's equation has 1).  The paper
reports 0.93 % (+- 0.07) test error on MNIST with 100 labels.

After training, ``write_artifacts`` writes ``fm_gan_samples.png``: unlabeled
data beside generator samples.
"""
import os

import keras
import numpy as np
import tensorflow as tf

from tf_advssl import distribution, losses
from tf_advssl.config import ConfigError
from tf_advssl.hparams.fm_gan import FMGANParams
from tf_advssl.layers import BatchNormalization, WeightNormDense, frozen_batch_stats
from tf_advssl.methods.base import SSLModel
from tf_advssl.methods.common import adam, minimize, penultimate_features


def build_generator(kind, noise_dim, data_shape, hidden_units, output, seed):
    """G: noise (batch, noise_dim) -> samples (batch,) + data_shape, float32."""
    init = lambda k: keras.initializers.GlorotUniform(seed=seed + k)  # noqa: E731
    inputs = keras.Input((noise_dim,), name="fm_gan_noise")
    activation = None if output == "linear" else output
    if kind == "mlp":
        h = inputs
        for i in range(2):
            h = keras.layers.Dense(hidden_units, use_bias=False, kernel_initializer=init(i),
                                   name=f"fm_gan_dense{i}")(h)
            h = BatchNormalization(name=f"fm_gan_bn{i}")(h)
            h = keras.layers.Activation("softplus", name=f"fm_gan_softplus{i}")(h)
        h = WeightNormDense(int(np.prod(data_shape)), activation=activation, kernel_initializer=init(2),
                            dtype="float32", name="fm_gan_output")(h)
        outputs = keras.layers.Reshape(data_shape, dtype="float32", name="fm_gan_reshape")(h)
    else:
        height, width, channels = data_shape
        h = keras.layers.Dense((height // 4) * (width // 4) * 256, use_bias=False, kernel_initializer=init(0),
                               name="fm_gan_dense")(inputs)
        h = keras.layers.Reshape((height // 4, width // 4, 256), name="fm_gan_reshape")(h)
        h = BatchNormalization(name="fm_gan_bn0")(h)
        h = keras.layers.ReLU(name="fm_gan_relu0")(h)
        h = keras.layers.Conv2DTranspose(128, 5, strides=2, padding="same", use_bias=False,
                                         kernel_initializer=init(1), name="fm_gan_deconv1")(h)
        h = BatchNormalization(name="fm_gan_bn1")(h)
        h = keras.layers.ReLU(name="fm_gan_relu1")(h)
        outputs = keras.layers.Conv2DTranspose(channels, 5, strides=2, padding="same", activation=activation,
                                               kernel_initializer=init(2), dtype="float32",
                                               name="fm_gan_deconv2")(h)
    return keras.Model(inputs, outputs, name="fm_gan_generator")


def log_sum_exp(logits):
    return tf.reduce_logsumexp(tf.cast(logits, tf.float32), axis=-1)


def discriminator_features(classifier):
    """The tensor feature matching matches: the input of the classifier's logits layer, or,
    when that input is the output of a GaussianNoise layer, the input of that layer (the
    official MNIST code's ``layers[-3]``: the last hidden layer's ReLU, before its noise)."""
    last, before = classifier.layers[-1], classifier.layers[-2]
    if isinstance(before, keras.layers.GaussianNoise) and before.output is last.input:
        return before.input
    return penultimate_features(classifier)


class FMGAN(SSLModel):
    Params = FMGANParams
    loss_names = ("loss_nll", "loss_unlabeled", "loss_feature_matching")
    # The paper's MNIST run: its discriminator, Adam 3e-3, 100 labeled and 100 unlabeled examples
    # per step; explicit flags win (Adam's beta_1 = 0.5 there is --momentum=0.5, not a default).
    _PAPER_MNIST = {"network": "mlp_wn", "learning_rate": 3e-3, "batch_size": 100, "unlabeled_batch_size": 100}
    dataset_config_defaults = {"mnist": _PAPER_MNIST, "fashion_mnist": _PAPER_MNIST}

    def __init__(self, classifier, params=None, **kwargs):
        super().__init__(classifier, params, **kwargs)
        params = self.params
        if params.fm_gan_generator == "conv" and (len(self.data_shape) != 3 or self.data_shape[0] % 4
                                                  or self.data_shape[1] % 4):
            raise ConfigError(f"--fm_gan_generator=conv needs images whose height and width divide by 4; "
                              f"the --dataset inputs have shape {self.data_shape} (use --fm_gan_generator=mlp)")
        self.generator = build_generator(params.fm_gan_generator, params.fm_gan_noise_dim, self.data_shape,
                                         params.fm_gan_hidden_units, params.fm_gan_output,
                                         seed=int(kwargs.get("seed", 0)) + 211)
        self.features = keras.Model(classifier.inputs, discriminator_features(classifier),
                                    name="fm_gan_features")
        self.generator_optimizer = adam(params.fm_gan_learning_rate, beta_1=0.5)
        self.generator_optimizer.build(self.generator.trainable_variables)

    def extra_optimizers(self):
        return [self.generator_optimizer]

    def sample_noise(self, n):
        return keras.random.uniform((n, self.params.fm_gan_noise_dim), seed=self.seed_generator)

    def noisy(self, x):
        """Discriminator input: x plus Gaussian noise of std fm_gan_input_noise."""
        x = tf.cast(x, tf.float32)
        if self.params.fm_gan_input_noise > 0:
            x = x + self.params.fm_gan_input_noise * keras.random.normal(tf.shape(x), seed=self.seed_generator)
        return x

    def discriminator_losses(self, x_labeled, y_labeled, x_unlabeled, x_generated):
        """(L_nll, L_unlabeled) of the discriminator; ``x_generated`` is held fixed."""
        logits_labeled = self.logits(self.noisy(x_labeled))
        lse_real = log_sum_exp(self.logits(self.noisy(x_unlabeled)))
        with frozen_batch_stats():
            lse_fake = log_sum_exp(self.logits(self.noisy(tf.stop_gradient(x_generated))))
        loss_unlabeled = (tf.reduce_mean(tf.nn.softplus(lse_real) - lse_real)
                          + tf.reduce_mean(tf.nn.softplus(lse_fake)))
        return tf.reduce_mean(losses.cross_entropy(y_labeled, logits_labeled)), loss_unlabeled

    def feature_matching_loss(self, x_unlabeled, x_generated):
        """mean_f (E f(x) - E f(G(z)))^2; the data's features are a constant target.
        The expectations are over the global batch (means over replicas under tf.distribute)."""
        with frozen_batch_stats():
            features_real = tf.cast(self.features(self.noisy(x_unlabeled), training=True), tf.float32)
            features_fake = tf.cast(self.features(self.noisy(x_generated), training=True), tf.float32)
        target = tf.stop_gradient(distribution.replica_mean(tf.reduce_mean(features_real, axis=0)))
        generated = distribution.replica_mean(tf.reduce_mean(features_fake, axis=0))
        return tf.reduce_mean(tf.square(target - generated))

    def generate(self, n, training=True):
        return self.generator(self.sample_noise(n), training=training)

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
        """All terms at the current weights (no update), with fresh noise."""
        with frozen_batch_stats():
            x_generated = self.generate(tf.shape(x_unlabeled)[0])
        loss_nll, loss_unlabeled = self.discriminator_losses(x_labeled, y_labeled, x_unlabeled, x_generated)
        return {"loss_nll": loss_nll, "loss_unlabeled": loss_unlabeled,
                "loss_feature_matching": self.feature_matching_loss(x_unlabeled, x_generated)}

    def train_step(self, data):
        (x_labeled, y_labeled), (x_unlabeled, _) = data
        x_labeled, x_unlabeled = self.augment(x_labeled), self.augment(x_unlabeled)
        n = tf.shape(x_unlabeled)[0]
        with frozen_batch_stats():
            x_generated = tf.stop_gradient(self.generate(n))
        terms = {}

        def discriminator_loss():
            terms["loss_nll"], terms["loss_unlabeled"] = self.discriminator_losses(
                x_labeled, y_labeled, x_unlabeled, x_generated)
            return terms["loss_nll"] + self.params.fm_gan_unlabeled_weight * terms["loss_unlabeled"]

        loss = minimize(self.optimizer, self.classifier.trainable_variables, discriminator_loss)
        terms["loss_feature_matching"] = minimize(
            self.generator_optimizer, self.generator.trainable_variables,
            lambda: self.feature_matching_loss(x_unlabeled, self.generate(n)))
        self.after_update()
        logs = dict(terms)
        logs["loss"] = loss + terms["loss_feature_matching"]
        return logs

    def write_artifacts(self, workdir, data):
        """``fm_gan_samples.png``: unlabeled training data beside generator samples."""
        from tf_advssl import plotting

        count = 100 if len(self.data_shape) == 3 else 1000
        x = data.preprocessor(tf.constant(data.x_train[:count])).numpy()
        samples = self.generator(keras.random.uniform((count, self.params.fm_gan_noise_dim), seed=0),
                                 training=False).numpy()
        plotting.sample_panels_figure([("unlabeled data", x, None), ("generator samples", samples, None)],
                                      os.path.join(workdir, "fm_gan_samples.png"))
