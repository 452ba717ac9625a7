"""The one place where tf_advssl reaches past Keras' public API, each with the test that fails
when Keras changes under it (tests/test_keras_workarounds.py; LazyAdam: tests/test_xvat.py).

``narrowed_randaugment``: ``keras.layers.RandAugment`` draws its rotation, shear and
translation from one ``factor`` shared by every operation; FixMatch (Sohn et al. 2020, its
table 12) narrows those three.  Keras has no argument for it, so the three sub-layers, public
layers held under the attribute names RandAugment's operation list uses, are replaced.

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
(what the dense gradient would hold).  ``LazyAdam`` reads Adam's per-variable moments (``_momentums``, ``_velocities``,
``_get_variable_index``), which Keras does not make public.
"""
import keras
import tensorflow as tf

# The RandAugment attributes replaced, and the Keras layer each must stay.
GEOMETRIC_LAYERS = {"random_rotation": keras.layers.RandomRotation, "random_shear": keras.layers.RandomShear,
                    "random_translation": keras.layers.RandomTranslation}


def narrowed_randaugment(value_range, num_ops, factor, seed, *, rotation_degrees, shear, translation):
    """RandAugment(value_range, num_ops, factor) whose rotation is at most ``rotation_degrees``,
    shear at most ``shear`` and translation at most ``translation`` (fractions of the image
    side); the geometric operations fill with the middle of ``value_range``."""
    layer = keras.layers.RandAugment(value_range=value_range, num_ops=num_ops, factor=factor, seed=seed)
    fill = dict(fill_mode="constant", fill_value=0.5 * (value_range[0] + value_range[1]))
    layer.random_rotation = keras.layers.RandomRotation(rotation_degrees / 360.0, seed=seed, **fill)
    layer.random_shear = keras.layers.RandomShear(shear, shear, seed=seed, **fill)
    layer.random_translation = keras.layers.RandomTranslation(translation, translation, seed=seed, **fill)
    return layer


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
