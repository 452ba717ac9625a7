"""The run's optimizer and learning-rate schedule (``build_optimizer``); the optimizer Keras 3
does not have (``LazyAdam``, for xVAT's per-example table) is in ``keras_workarounds``, since it
reads Adam's moment variables."""
import keras
import tensorflow as tf

from tf_advssl.config import Config


class VATLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant ``base`` until ``decay_start * total_steps``, then linearly to 0 (VAT)."""

    def __init__(self, base, total_steps, decay_start):
        self.base, self.total_steps, self.decay_start = float(base), int(total_steps), float(decay_start)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        start = self.decay_start * self.total_steps
        fraction = (self.total_steps - step) / max(1.0, self.total_steps - start)
        return self.base * tf.clip_by_value(fraction, 0.0, 1.0)

    def get_config(self):
        return dict(base=self.base, total_steps=self.total_steps, decay_start=self.decay_start)


def build_optimizer(config: Config):
    if config.lr_schedule == "vat_linear":
        learning_rate = VATLinearDecay(config.learning_rate, config.train_steps, config.lr_decay_start)
    elif config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.train_steps)
    elif config.lr_schedule == "exponential":  # the official VAT MNIST code: x0.9 every 500 steps
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            config.learning_rate, config.lr_decay_steps, config.lr_decay_rate, staircase=True)
    else:
        learning_rate = config.learning_rate
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate, beta_1=config.momentum,
                                     weight_decay=config.weight_decay or None)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, beta_1=config.momentum,
                                      weight_decay=config.weight_decay)
    return keras.optimizers.SGD(learning_rate, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay or None)
