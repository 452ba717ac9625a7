"""The run's optimizer and learning-rate schedule (``build_optimizer``), and optimizers Keras 3
does not have.

``LazyAdam``: Adam for large tables of which each step touches a few rows (xVAT's
transductive log-alpha table, one row per training example).  Given a sparse
gradient (``tf.IndexedSlices``, what ``tf.gather`` produces), it updates the first
and second moments and the variable only in the rows of the batch; rows outside
the batch keep their value and their moments.  Dense Adam would instead keep
moving every row through its moments at every step, and read and write the whole
table three times per step.  Given a dense gradient it is Keras' Adam.

Per visited row, with t the optimizer's step count (global, as Keras' Adam):

    m_row = beta_1 m_row + (1 - beta_1) g_row
    v_row = beta_2 v_row + (1 - beta_2) g_row^2
    row  -= lr sqrt(1 - beta_2^t) / (1 - beta_1^t) m_row / (sqrt(v_row) + epsilon)

Rows that occur several times in one gradient have their slices summed first
(what the dense gradient would hold).
"""
import keras
import tensorflow as tf

from tf_advssl.config import Config


class LazyAdam(keras.optimizers.Adam):
    """Adam whose sparse updates touch only the rows of the gradient (see module doc)."""

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, name="lazy_adam", **kwargs):
        if kwargs.get("amsgrad"):
            raise ValueError("LazyAdam does not implement amsgrad")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         name=name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        rows, positions = tf.unique(gradient.indices)
        values = tf.math.unsorted_segment_sum(tf.cast(gradient.values, dtype), positions, tf.size(rows))
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = (tf.cast(learning_rate, dtype) * tf.sqrt(1.0 - tf.pow(beta_2, step))
                 / (1.0 - tf.pow(beta_1, step)))
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        m_rows = beta_1 * tf.gather(m.value, rows) + (1.0 - beta_1) * values
        v_rows = beta_2 * tf.gather(v.value, rows) + (1.0 - beta_2) * tf.square(values)
        self.assign(m, tf.IndexedSlices(m_rows, rows, gradient.dense_shape))
        self.assign(v, tf.IndexedSlices(v_rows, rows, gradient.dense_shape))
        self.assign_sub(variable, tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon),
                                                   rows, gradient.dense_shape))


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
