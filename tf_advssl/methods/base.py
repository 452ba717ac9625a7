"""The shared semi-supervised model every method builds on.

A method subclasses :class:`SSLModel` and states only its losses:

    class VAT(SSLModel):
        loss_names = ("loss_nll", "loss_vat")
        def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled):
            return {"loss_nll": ..., "loss_vat": ...}
        def loss_weights(self):
            return {"loss_nll": 1.0, "loss_vat": self.params.vat_weight}

The base owns the common work: unpacking ``((x_l, y_l), (x_u, idx_u))``,
input augmentation, the weighted sum of the named terms (one line, in
``train_step``), loss scaling for mixed precision, scaling for distribution
(each replica's batch mean divided by the replica count, so that the summed
gradients equal the single-device gradient of the global mean), the optional
EMA teacher, and evaluation (test error in percent).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import keras
import tensorflow as tf

from tf_advssl import losses
from tf_advssl.config import ConfigError
from tf_advssl.layers import frozen_batch_stats


def param(default, help: str, **metadata):
    """A method hyper-parameter: a dataclass field whose flag help is ``help``."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


@dataclasses.dataclass
class NoParams:
    DATASET_DEFAULTS: ClassVar[dict] = {}

    def validate(self) -> None:
        pass


def joint_batch_param():
    """The ``joint_batch`` field shared by the methods that train on labeled and unlabeled rows."""
    return param(True, "One training pass over the labeled and the unlabeled rows, so batch norm "
                       "normalises both with the same statistics (false: separate passes, in which a "
                       "batch-norm network can fit the labels under the statistics of labeled-only "
                       "batches; docs/RESULTS.md).")


def require_nonnegative(params, *names):
    for name in names:
        value = getattr(params, name)
        if value < 0:
            raise ConfigError(f"--{name} must be >= 0, got {value}")


def require_choice(params, name, allowed):
    value = getattr(params, name)
    if value not in allowed:
        raise ConfigError(f"--{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")


def sigmoid_rampup(step, rampup_steps):
    """exp(-5 (1 - t)^2) for t = step / rampup_steps in [0, 1] (Laine & Aila 2017)."""
    if rampup_steps <= 0:
        return tf.constant(1.0)
    t = tf.clip_by_value(tf.cast(step, tf.float32) / float(rampup_steps), 0.0, 1.0)
    return tf.exp(-5.0 * tf.square(1.0 - t))


def _all_layers(model):
    """Every layer nested in ``model`` (depth first)."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


# Random translations of up to 2 pixels on the MNIST-like sets, for the consistency methods
# whose papers train with translations (Laine & Aila, Tarvainen & Valpola, Verma et al. and
# Berthelot et al. on SVHN, with flips added only on CIFAR).  A method's
# ``dataset_config_defaults``; --augment_translate=0 turns it off.  Without it the Pi-model,
# for one, ends worse than supervised on MNIST-100 (docs/RESULTS.md, session 7).
TRANSLATE_ON_MNIST = {"mnist": {"augment_translate": 2}, "fashion_mnist": {"augment_translate": 2}}


class SSLModel(keras.Model):
    """Base semi-supervised model; see the module docstring.

    Args:
      classifier: keras.Model mapping model-space inputs to logits.
      params: the method's Params dataclass instance.
      num_classes: number of classes.
      total_steps: planned training steps (ramp-ups and schedules use it).
      augmentation: optional keras layer applied to both streams in training.
      num_train_examples: size of the training set (per-example state).
      eval_ema / ema_decay: keep an EMA copy of the classifier ("teacher") and
        evaluate it instead of the raw weights.
      seed: seed of this model's random stream (perturbation starts, mixup, ...).
    """

    Params: ClassVar[type] = NoParams
    loss_names: ClassVar[tuple] = ("loss_nll",)
    augment_inputs: ClassVar[bool] = True
    needs_teacher: ClassVar[bool] = False
    # Run settings (Config fields) this method's paper uses, applied when the flag is unset
    # (before the dataset's defaults), e.g. {"batch_size": 64, "unlabeled_batch_size": 448}.
    config_defaults: ClassVar[dict] = {}
    # The same per dataset family (a key of config.DATASET_DEFAULTS), applied over
    # ``config_defaults``, e.g. {"mnist": {"network": "mlp_wn"}}; flags still win.
    dataset_config_defaults: ClassVar[dict] = {}

    def __init__(self, classifier: keras.Model, params, *, num_classes: int, total_steps: int,
                 augmentation=None, num_train_examples: int = 0, input_shape=None,
                 eval_ema: bool = False, ema_decay: float = 0.999, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.params = params
        self.num_classes = num_classes
        self.total_steps = int(total_steps)
        self.augmentation = augmentation
        self.num_train_examples = int(num_train_examples)
        self.data_shape = tuple(input_shape) if input_shape is not None else tuple(classifier.input_shape[1:])
        self.eval_ema = eval_ema
        self.ema_decay = float(ema_decay)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.teacher = None
        if self.needs_teacher or eval_ema:
            self.teacher = keras.models.clone_model(classifier)
            self.teacher.trainable = False
            for layer in _all_layers(self.teacher):
                if isinstance(layer, keras.layers.BatchNormalization):
                    # Batch statistics in training mode (as the reference Mean Teacher, ICT
                    # and AdvMixup code run the EMA model); the teacher's weights and moving
                    # statistics still change only through the EMA in ``update_teacher``.
                    layer.trainable = True
            for target, source in zip(self.teacher.weights, self.classifier.weights):
                target.assign(source)
        self.error_tracker = keras.metrics.Mean(name="error")  # percent

    # ----- what a method states ---------------------------------------------------
    def compute_losses(self, x_labeled, y_labeled, x_unlabeled, idx_unlabeled) -> dict:
        raise NotImplementedError

    def loss_weights(self) -> dict:
        """Weight of each named term (may depend on ``self.step``). Default: all 1."""
        return {name: 1.0 for name in self.loss_names}

    @classmethod
    def validate_config(cls, config) -> None:
        """Hook run by ``training.validate`` on the resolved run config, before any work:
        checks that need more than the method's Params (raise ConfigError). Default: none."""

    # ----- helpers for methods ----------------------------------------------------
    @property
    def step(self):
        """Number of optimizer updates applied so far (int64 tensor)."""
        return self.optimizer.iterations

    def logits(self, x, training=True):
        return self.classifier(x, training=training)

    def frozen_logits(self, x, gradient=False):
        """The classifier's training-mode logits on x without updating batch-norm moving
        statistics (clean passes on unlabeled data); a constant unless ``gradient``."""
        with frozen_batch_stats():
            logits = self.logits(x)
        return logits if gradient else tf.stop_gradient(logits)

    def joint_logits(self, *batches):
        """The classifier's logits on several batches from ONE training-mode pass over
        their concatenation, split back in order: batch norm normalises every row with
        the same statistics and updates its moving averages once (``joint_batch``)."""
        batches = [tf.cast(x, tf.float32) for x in batches]
        logits = self.logits(tf.concat(batches, axis=0))
        return tf.split(logits, [tf.shape(x)[0] for x in batches], axis=0)

    def student_passes(self, x_labeled, x_unlabeled):
        """Training-mode logits on a labeled and an unlabeled batch: one joint pass when the
        method's ``joint_batch`` parameter is set (minibatches holding both, as the
        consistency and pseudo-label papers), else two passes, each updating batch norm."""
        if self.params.joint_batch:
            return self.joint_logits(x_labeled, x_unlabeled)
        return self.logits(x_labeled), self.logits(x_unlabeled)

    def teacher_logits(self, x, training=True):
        """Logits of the EMA teacher (or the classifier when there is none), a constant.

        In training mode batch-norm layers normalise with the batch's statistics and
        update no moving averages."""
        model = self.teacher if self.teacher is not None else self.classifier
        with frozen_batch_stats():
            return tf.stop_gradient(model(x, training=training))

    def trainable_for_loss(self):
        """Variables the summed loss is differentiated against."""
        return self.classifier.trainable_variables

    def build_extra(self):
        """Hook run by ``training.build_model`` after ``self.optimizer`` is built and
        before the checkpoint is created: build the variables of any extra
        optimizers (see ``extra_optimizers``) so that checkpoints hold them."""

    def write_artifacts(self, workdir: str, data):
        """Hook run at the end of training: write method-specific files (e.g. a
        grid of generated samples) into ``workdir``; ``data`` is the SSLData."""

    def example_views(self, x, indices) -> dict:
        """Hook for the end-of-training picture of image runs: the method's own perturbed
        versions of the model-space images ``x`` (training examples ``indices``), as
        {row title: images shaped like x} (xVAT masks, AdvMixup mixtures, ...). Default: none."""
        return {}

    def initialize_weights(self, config):
        """Hook run by ``training.run`` when a run starts from step 0 (not on resume), before
        the first step; e.g. SCAR copies a pretrained run's weights here."""

    # Steps between calls of ``training_data`` during training (0: only at the start).
    data_refresh_steps = 0

    def training_data(self, config, data, step: int):
        """Hook run by ``training.run`` at the first step of an invocation and then every
        ``data_refresh_steps`` steps: the SSLData the batches from ``step`` on are drawn
        from (e.g. SCAR's labeled set grown by pseudo-labeled examples). Default: ``data``.
        ``config.workdir`` is where the hook may write: the run directory on the chief, a
        scratch directory on the other workers of a multi-worker run."""
        return data

    def after_update(self):
        """Hook run after the optimizer step (EMA teacher update by default)."""
        if self.teacher is not None:
            self.update_teacher()

    def teacher_decay(self):
        """EMA decay of the teacher after the current step: min(ema_decay, (1 + t) / (10 + t))."""
        return tf.minimum(self.ema_decay,
                          (1.0 + tf.cast(self.step, tf.float32)) / (10.0 + tf.cast(self.step, tf.float32)))

    def update_teacher(self):
        decay = self.teacher_decay()
        for target, source in zip(self.teacher.weights, self.classifier.weights):
            if "float" not in str(target.dtype):
                continue  # e.g. seed-generator states
            target.assign(decay * target + (1.0 - decay) * tf.cast(source, target.dtype))

    # ----- Keras plumbing ---------------------------------------------------------
    def call(self, x, training=False):
        model = self.teacher if (self.eval_ema and self.teacher is not None and not training) else self.classifier
        return model(x, training=training)

    def augment(self, x):
        if self.augmentation is None:
            return x
        return self.augmentation(x, training=True)

    def train_step(self, data):
        (x_labeled, y_labeled), (x_unlabeled, idx_unlabeled) = data
        if self.augment_inputs:
            x_labeled, x_unlabeled = self.augment(x_labeled), self.augment(x_unlabeled)
        variables = self.trainable_for_loss()
        with tf.GradientTape() as tape:
            terms = self.compute_losses(x_labeled, y_labeled, x_unlabeled, idx_unlabeled)
            weights = self.loss_weights()
            loss = tf.add_n([tf.cast(weights[name], tf.float32) * terms[name] for name in self.loss_names])
            scaled_loss = self.optimizer.scale_loss(losses.scale_for_replicas(loss))
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.after_update()
        logs = {name: terms[name] for name in self.loss_names}
        logs["loss"] = loss
        return logs

    def test_step(self, data):
        x, y = data
        logits = self(x, training=False)
        self.error_tracker.update_state(100.0 * losses.error_count(y, logits))
        return {"error": self.error_tracker.result()}

    @property
    def metrics(self):
        return [self.error_tracker]
