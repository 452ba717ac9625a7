"""Semi-supervised adversarial autoencoder (Makhzani, Shlens, Jaitly, Goodfellow, Frey;
"Adversarial Autoencoders", ICLR 2016 workshop / arXiv:1511.05644, section 5).

An encoder q(y, z | x) gives a categorical code y (the class, softmax of K
logits) and a continuous style code z; a decoder p(x | y, z) reconstructs x.
Two discriminators push the aggregated posteriors to their priors:
D_cat separates one-hot samples of Cat(K) from q(y | x), D_style separates
samples of N(0, s^2 I) from q(z | x).  Each train_step runs the paper's three
phases, each an update with its own optimizer:

    1. reconstruction (unlabeled batch; encoder + decoder):
         L_reconst = E_x[ mean_d (x_d - dec(softmax(q_y(x)), q_z(x))_d)^2 ]
    2. regularization (unlabeled batch), first the discriminators, then the encoder as generator:
         L_disc = E_{y~Cat}[softplus(-D_cat(y))] + E_x[softplus(D_cat(softmax(q_y(x))))]
                + E_{z~N}[softplus(-D_style(z))] + E_x[softplus(D_style(q_z(x)))]
         L_gen  = E_x[softplus(-D_cat(softmax(q_y(x))))] + E_x[softplus(-D_style(q_z(x)))]
    3. semi-supervised classification (labeled batch; q(y | x) only):
         L_nll = E_{D_l}[ -log softmax(q_y(x))_y ]      (the run's optimizer)

(softplus(-d) = -log sigmoid(d): binary cross-entropy on discriminator logits.)

Design: the classifier chosen by --network *is* q(y | x) (it is what is
evaluated and exported); the style head is a dense layer on the classifier's
penultimate features (the input of its logits layer), so y and z share the
encoder body as in the paper.  The decoder and both discriminators are MLPs
with two hidden ReLU layers of --aae_hidden_units units (paper, MNIST: 1000);
the decoder's output is linear (inputs are in model space, which may be
whitened) and the reconstruction error is the squared error averaged over
input features.  Reconstruction uses Adam(--aae_learning_rate); the two
adversarial phases use Adam(--aae_learning_rate, beta_1 = 0.5), the usual GAN
setting; the paper used SGD with momentum 0.9 and per-phase learning rates.
The style code has --aae_style_dim dimensions and prior N(0, --aae_prior_std^2).
The paper reports 1.90 % (+- 0.10) test error on MNIST with 100 labels.

After training, ``write_artifacts`` writes ``aae_samples.png``: test inputs,
their reconstructions and samples dec(one_hot(k), z), one row per class.
"""
import os

import keras
import numpy as np
import tensorflow as tf

from tf_advssl import losses
from tf_advssl.hparams.aae import AAEParams
from tf_advssl.layers import frozen_batch_stats
from tf_advssl.methods.base import SSLModel
from tf_advssl.methods.common import adam, minimize, penultimate_features


def mlp(input_dim, hidden_units, output_dim, name, seed, num_hidden=2):
    """Dense-ReLU x num_hidden, then a linear float32 output layer."""
    inputs = keras.Input((input_dim,), name=f"{name}_inputs")
    h = inputs
    for i in range(num_hidden):
        h = keras.layers.Dense(hidden_units, activation="relu", name=f"{name}_dense{i}",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i))(h)
    outputs = keras.layers.Dense(output_dim, dtype="float32", name=f"{name}_output",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed=seed + num_hidden))(h)
    return keras.Model(inputs, outputs, name=name)


def binary_cross_entropy(logits, real: bool):
    """Mean of -log sigmoid(d) (real) or -log(1 - sigmoid(d)) (fake) over discriminator logits."""
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.softplus(-logits if real else logits))


class AAE(SSLModel):
    Params = AAEParams
    loss_names = ("loss_reconstruction", "loss_discriminator", "loss_generator", "loss_nll")

    def __init__(self, classifier, params=None, **kwargs):
        super().__init__(classifier, params, **kwargs)
        params = self.params
        seed = int(kwargs.get("seed", 0)) + 101
        style = keras.layers.Dense(params.aae_style_dim, dtype="float32", name="aae_style",
                                   kernel_initializer=keras.initializers.GlorotUniform(seed=seed))
        self.encoder = keras.Model(classifier.inputs, [classifier.outputs[0], style(penultimate_features(classifier))],
                                   name="aae_encoder")
        num_features = int(np.prod(self.data_shape))
        self.decoder = keras.Sequential(
            [mlp(self.num_classes + params.aae_style_dim, params.aae_hidden_units, num_features,
                 "aae_decoder_mlp", seed + 10),
             keras.layers.Reshape(self.data_shape, dtype="float32")], name="aae_decoder")
        self.categorical_discriminator = mlp(self.num_classes, params.aae_hidden_units, 1,
                                             "aae_categorical_discriminator", seed + 20)
        self.style_discriminator = mlp(params.aae_style_dim, params.aae_hidden_units, 1,
                                       "aae_style_discriminator", seed + 30)
        self.reconstruction_optimizer = adam(params.aae_learning_rate)
        self.discriminator_optimizer = adam(params.aae_learning_rate, beta_1=0.5)
        self.generator_optimizer = adam(params.aae_learning_rate, beta_1=0.5)
        self.reconstruction_optimizer.build(self.reconstruction_variables())
        self.discriminator_optimizer.build(self.discriminator_variables())
        self.generator_optimizer.build(self.encoder.trainable_variables)

    def extra_optimizers(self):
        return [self.reconstruction_optimizer, self.discriminator_optimizer, self.generator_optimizer]

    # ----- parts -------------------------------------------------------------------
    def reconstruction_variables(self):
        return self.encoder.trainable_variables + self.decoder.trainable_variables

    def discriminator_variables(self):
        return self.categorical_discriminator.trainable_variables + self.style_discriminator.trainable_variables

    def encode(self, x, training=True):
        """(y, z): class probabilities softmax(q_y(x)) (batch, K) and style code (batch, style_dim)."""
        logits, style = self.encoder(tf.cast(x, tf.float32), training=training)
        return tf.nn.softmax(tf.cast(logits, tf.float32)), tf.cast(style, tf.float32)

    def decode(self, y, z, training=True):
        return self.decoder(tf.concat([tf.cast(y, tf.float32), tf.cast(z, tf.float32)], axis=-1),
                            training=training)

    def sample_prior(self, n):
        """(one-hot y ~ Cat(K), z ~ N(0, prior_std^2 I)), shapes (n, K) and (n, style_dim)."""
        classes = keras.random.randint((n,), 0, self.num_classes, seed=self.seed_generator)
        z = self.params.aae_prior_std * keras.random.normal((n, self.params.aae_style_dim),
                                                            seed=self.seed_generator)
        return tf.one_hot(classes, self.num_classes), z

    # ----- the loss of each phase ---------------------------------------------------
    def reconstruction_loss(self, x):
        y, z = self.encode(x)
        squared = tf.square(tf.cast(x, tf.float32) - tf.cast(self.decode(y, z), tf.float32))
        return tf.reduce_mean(tf.reshape(squared, [tf.shape(squared)[0], -1]))

    def discriminator_loss(self, x, y_prior, z_prior):
        with frozen_batch_stats():
            y, z = self.encode(x)
        y, z = tf.stop_gradient(y), tf.stop_gradient(z)
        return (binary_cross_entropy(self.categorical_discriminator(y_prior, training=True), real=True)
                + binary_cross_entropy(self.categorical_discriminator(y, training=True), real=False)
                + binary_cross_entropy(self.style_discriminator(z_prior, training=True), real=True)
                + binary_cross_entropy(self.style_discriminator(z, training=True), real=False))

    def generator_loss(self, x):
        with frozen_batch_stats():
            y, z = self.encode(x)
        return (binary_cross_entropy(self.categorical_discriminator(y, training=True), real=True)
                + binary_cross_entropy(self.style_discriminator(z, training=True), real=True))

    def classification_loss(self, x, y):
        return tf.reduce_mean(losses.cross_entropy(y, self.logits(x)))

    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
        """All four terms at the current weights (no update), with fresh prior samples."""
        y_prior, z_prior = self.sample_prior(tf.shape(x_unlabeled)[0])
        return {"loss_reconstruction": self.reconstruction_loss(x_unlabeled),
                "loss_discriminator": self.discriminator_loss(x_unlabeled, y_prior, z_prior),
                "loss_generator": self.generator_loss(x_unlabeled),
                "loss_nll": self.classification_loss(x_labeled, y_labeled)}

    # ----- the three phases -----------------------------------------------------------
    def train_step(self, data):
        (x_labeled, y_labeled), (x_unlabeled, _) = data
        x_labeled, x_unlabeled = self.augment(x_labeled), self.augment(x_unlabeled)
        terms = {"loss_reconstruction": minimize(self.reconstruction_optimizer, self.reconstruction_variables(),
                                                 lambda: self.reconstruction_loss(x_unlabeled))}
        y_prior, z_prior = self.sample_prior(tf.shape(x_unlabeled)[0])
        terms["loss_discriminator"] = minimize(self.discriminator_optimizer, self.discriminator_variables(),
                                               lambda: self.discriminator_loss(x_unlabeled, y_prior, z_prior))
        terms["loss_generator"] = minimize(self.generator_optimizer, self.encoder.trainable_variables,
                                           lambda: self.generator_loss(x_unlabeled))
        terms["loss_nll"] = minimize(self.optimizer, self.classifier.trainable_variables,
                                     lambda: self.classification_loss(x_labeled, y_labeled))
        self.after_update()
        logs = dict(terms)
        logs["loss"] = tf.add_n(list(terms.values()))
        return logs

    # ----- pictures ---------------------------------------------------------------------
    def write_artifacts(self, workdir, data):
        """``aae_samples.png``: test inputs, reconstructions, and class-conditional samples."""
        from tf_advssl import plotting

        is_image = len(self.data_shape) == 3
        count = 10 if is_image else 500
        x = data.preprocessor(tf.constant(data.x_test[:count]))
        y, z = self.encode(x, training=False)
        reconstructions = self.decode(y, z, training=False).numpy()
        classes = min(self.num_classes, 10)
        per_class = 10 if is_image else 50
        labels = np.repeat(np.arange(classes), per_class)
        generator = keras.random.SeedGenerator(0)
        z_prior = self.params.aae_prior_std * keras.random.normal((per_class, self.params.aae_style_dim),
                                                                  seed=generator)
        samples = self.decode(tf.one_hot(labels, self.num_classes), tf.tile(z_prior, [classes, 1]),
                              training=False).numpy()
        plotting.sample_panels_figure(
            [("test inputs", x.numpy(), data.y_test[:count]),
             ("reconstructions", reconstructions, data.y_test[:count]),
             ("samples dec(one_hot(k), z)" + (", row k" if is_image else ", coloured by k"), samples, labels)],
            os.path.join(workdir, "aae_samples.png"), columns=per_class)
