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
from tf_advssl.hparams.common import NoParams
from tf_advssl.layers import batch_norm_layers, frozen_batch_stats
from tf_advssl.methods.common import scaled_for_update


# Keyword arguments passed on to keras.Model.
KERAS_MODEL_ARGUMENTS = ("name", "trainable", "dtype")


class SSLModel(keras.Model):
    """Base semi-supervised model; see the module docstring.

    Two ways to build one: the Keras way, the method's hyper-parameters as keyword arguments
    (``VAT(classifier, vat_eps=2.0)``; the others keep their defaults), or with a whole
    ``params`` object (``VAT(classifier, VATParams(...))``, as ``bin/train.py`` does).

    Args:
      classifier: keras.Model mapping model-space inputs to logits.
      params: the method's Params dataclass instance (default: its defaults, updated by the
        keyword arguments that name its fields).
      num_classes: number of classes (default: the classifier's last output dimension).
      total_steps: planned training steps; needed only by the methods whose ramp-ups are a
        fraction of the run (an error names it when one is missing).
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

    def __init__(self, classifier: keras.Model, params=None, *, num_classes: Optional[int] = None,
                 total_steps: Optional[int] = None, augmentation=None, num_train_examples: int = 0,
                 input_shape=None, eval_ema: bool = False, ema_decay: float = 0.999, seed: int = 0,
                 **kwargs):
        params = self.make_params(params, {k: kwargs.pop(k) for k in list(kwargs) if k in self.param_names()})
        unknown = sorted(set(kwargs) - set(KERAS_MODEL_ARGUMENTS))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown arguments {unknown}; its hyper-parameters are "
                            f"{', '.join(self.param_names()) or '(none)'}")
        super().__init__(**kwargs)
        self.classifier = classifier
        self.params = params
        self.num_classes = int(num_classes) if num_classes is not None else int(classifier.output_shape[-1])
        self._total_steps = None if total_steps is None else int(total_steps)
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
            for layer in batch_norm_layers(self.teacher):
                # Batch statistics in training mode (as the reference Mean Teacher, ICT
                # and AdvMixup code run the EMA model); the teacher's weights and moving
                # statistics still change only through the EMA in ``update_teacher``.
                layer.trainable = True
            for target, source in zip(self.teacher.weights, self.classifier.weights):
                target.assign(source)
        self.error_tracker = keras.metrics.Mean(name="error")  # percent

    @classmethod
    def param_names(cls) -> tuple:
        return tuple(f.name for f in dataclasses.fields(cls.Params))

    @classmethod
    def make_params(cls, params=None, overrides: Optional[dict] = None):
        """``params`` (default: the Params' defaults) with ``overrides`` applied, validated."""
        overrides = dict(overrides or {})
        if params is None:
            params = cls.Params()
        elif not isinstance(params, cls.Params):
            raise TypeError(f"{cls.__name__}: params must be a {cls.Params.__name__}, got {type(params).__name__}")
        params = dataclasses.replace(params, **overrides) if overrides else params
        params.validate()
        return params

    @property
    def total_steps(self) -> int:
        """The planned number of training steps (ramp-ups that last a fraction of the run)."""
        if self._total_steps is None:
            raise ValueError(f"{type(self).__name__} needs the planned number of training steps for its "
                             f"ramp-up: pass total_steps= (e.g. steps_per_epoch * epochs of model.fit)")
        return self._total_steps

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

    def write_artifacts(self, workdir: str, data):
        """Hook run at the end of training: write method-specific files (e.g. a
        grid of generated samples) into ``workdir``; ``data`` is the SSLData."""

    def example_views(self, x, indices) -> dict:
        """Hook for the end-of-training picture of image runs: the method's own perturbed
        versions of the model-space images ``x`` (training examples ``indices``), as
        {row title: images shaped like x} (xVAT masks, AdvMixup mixtures, ...). Default: none."""
        return {}

    def initialize_weights(self, config, restore_model):
        """Hook run by ``training.run`` when a run starts from step 0 (not on resume), before
        the first step; e.g. SCAR copies a pretrained run's weights here.  ``restore_model``:
        ``runs.restore_model``, run directory -> (model, config, spec, preprocessor)."""

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
    def compile(self, optimizer="rmsprop", **kwargs):
        """Keras' compile, then the optimizer's variables for those the summed loss trains
        (``trainable_for_loss``; a method's extra optimizers are built in its ``__init__``).
        The model counts as built (every variable exists once ``__init__`` and this have
        run), so that checkpoints and callbacks that restore weights before the first step
        (BackupAndRestore) find every variable."""
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.trainable_for_loss())
        self.built = True

    def evaluated_network(self) -> keras.Model:
        """The network evaluated and exported: the EMA teacher when ``eval_ema``, else the classifier."""
        return self.teacher if (self.eval_ema and self.teacher is not None) else self.classifier

    def call(self, x, training=False):
        return (self.classifier if training else self.evaluated_network())(x, training=training)

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
            scaled_loss = scaled_for_update(self.optimizer, loss)
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
