"""Small layers Keras 3 does not provide in the form this project needs.

``BatchNormalization`` behaves exactly like Keras' layer, except that inside
``frozen_batch_stats()`` a training-mode call normalises with the batch
statistics but does not update the moving averages.  Forward passes on
perturbed inputs (VAT, adversarial training, attacks) run inside that context,
as in the official VAT code (``update_batch_stats=False``).
"""
from __future__ import annotations

import contextlib
import threading

import keras
from keras import ops

_STATE = threading.local()


def batch_stats_frozen() -> bool:
    return getattr(_STATE, "frozen", 0) > 0


@contextlib.contextmanager
def frozen_batch_stats():
    """Within this context, BatchNormalization layers do not update moving stats.

    The flag is read while a function is traced, so it must wrap the call that
    builds the perturbed forward pass (which is where it is used).
    """
    _STATE.frozen = getattr(_STATE, "frozen", 0) + 1
    try:
        yield
    finally:
        _STATE.frozen -= 1


@keras.saving.register_keras_serializable(package="tf_advssl")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras BatchNormalization that honours :func:`frozen_batch_stats`."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and batch_stats_frozen()) or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        compute_dtype = keras.backend.result_type(inputs.dtype, "float32")
        inputs = ops.cast(inputs, compute_dtype)
        rank = len(inputs.shape)
        axes = [i for i in range(rank) if i != self.axis % rank]
        mean, variance = ops.moments(inputs, axes=axes, synchronized=self.synchronized)
        outputs = ops.batch_normalization(
            x=inputs,
            mean=mean,
            variance=variance,
            axis=self.axis,
            offset=ops.cast(self.beta, compute_dtype) if self.center else None,
            scale=ops.cast(self.gamma, compute_dtype) if self.scale else None,
            epsilon=self.epsilon,
        )
        return ops.cast(outputs, self.compute_dtype)



def layers_of(model, types) -> list:
    """Every layer of the given type(s) inside ``model`` (nested models included), in order."""
    found = []

    def walk(layer):
        if isinstance(layer, types):
            found.append(layer)
        for child in getattr(layer, "layers", []) or []:
            walk(child)

    walk(model)
    return found


def batch_norm_layers(model) -> list:
    """Every Keras BatchNormalization layer inside ``model`` (nested models included), in order."""
    return layers_of(model, keras.layers.BatchNormalization)


def recalibrate_batch_norm(models, batches) -> int:
    """Re-estimate the moving statistics of the batch-norm layers of ``models`` (a model or
    a list of models, all fed the same batches in one pass over them) on ``batches``.

    The official VAT MNIST code's "finetune batch stat": after training, the model is
    run in training mode (each layer normalised with its batch statistics) over the
    unlabeled data, and every moving mean / variance becomes the average of the batch
    statistics over all batches (a cumulative average: momentum n/(n+1) for batch n),
    replacing the exponential average of the labeled batches seen during training.
    Dropout and noise layers are off during these passes (``noise_off``): at inference they
    are off, and statistics of dropped-out activations would not describe its inputs.
    ``batches``: an iterable of input batches (model space).  Returns the number of
    batches used; models without batch norm are left untouched (0, ``batches`` unread)."""
    per_model = [(m, [layer for layer in batch_norm_layers(m) if layer.trainable and not layer.renorm])
                 for m in (models if isinstance(models, (list, tuple)) else [models])]
    models = [m for m, found in per_model if found]
    layers = [layer for _, found in per_model for layer in found]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    count = 0
    with noise_off(models):
        try:
            for x in batches:
                for layer in layers:  # read at call time: eager calls see each batch's value
                    layer.momentum = count / (count + 1.0)
                for model in models:
                    model(x, training=True)
                count += 1
        finally:
            for layer, momentum in zip(layers, momenta):
                layer.momentum = momentum
    return count


# The layers whose training-mode call adds noise, and the attribute that turns it off (Keras
# reads it at call time: ``if training and self.rate > 0``).
NOISE_LAYERS = ((keras.layers.Dropout, "rate"), (keras.layers.GaussianDropout, "rate"),
                (keras.layers.AlphaDropout, "rate"), (keras.layers.GaussianNoise, "stddev"))


@contextlib.contextmanager
def noise_off(models):
    """Within this context (eager calls), the dropout and noise layers of ``models`` add no
    noise in training mode, so that a training-mode pass differs from inference only in batch
    norm using batch statistics: what re-estimated statistics must describe."""
    changed = []
    try:
        for model in models:
            for layer_type, attribute in NOISE_LAYERS:
                for layer in layers_of(model, layer_type):
                    if getattr(layer, attribute):
                        changed.append((layer, attribute, getattr(layer, attribute)))
                        setattr(layer, attribute, 0.0)
        yield
    finally:
        for layer, attribute, value in changed:
            setattr(layer, attribute, value)

# ---------------------------------------------------------------------------
# Weight normalisation (Salimans & Kingma, 2016).
# ---------------------------------------------------------------------------


def _weight_norm_kernel(v, g, reduce_axes, epsilon):
    """``g * v / ||v||`` with the norm over ``reduce_axes`` (all but the output axis)."""
    sq_norm = ops.sum(ops.square(v), axis=reduce_axes, keepdims=True)
    return v * (g * ops.rsqrt(ops.maximum(sq_norm, epsilon)))


class _WeightNormBase(keras.layers.Layer):
    """Shared parameters of the weight-normalised layers.

    The effective kernel is ``w = g * v / ||v||`` (Salimans & Kingma, "Weight
    Normalization: A Simple Reparameterization to Accelerate Training of Deep
    Neural Networks", NeurIPS 2016), where the norm runs over every kernel axis
    except the last (output) one, so each output unit's weight vector has
    Euclidean norm ``g[j]``.  ``v`` and ``g`` are the trainable variables.

    ``g`` starts at ``||v||`` of the initial ``v``, so the effective kernel at
    initialisation equals ``v`` (drawn from ``kernel_initializer``).  The
    paper's data-dependent initialisation (``g`` and the bias from the
    statistics of a first minibatch) is :func:`weight_norm_data_init`.

    ``trainable_scale=False`` keeps ``g`` fixed at its initial value (a
    non-trainable variable), as the hidden layers of the Improved-GAN MNIST
    discriminator (``train_scale=False`` in openai/improved-gan); only the
    direction ``v`` and the bias are then learned.
    """

    def __init__(self, units_or_filters, *, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 epsilon=1e-12, trainable_scale=True, **kwargs):
        super().__init__(**kwargs)
        self._out = int(units_or_filters)
        if self._out <= 0:
            raise ValueError(f"Number of output units must be positive, got {units_or_filters}")
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.epsilon = float(epsilon)
        self.trainable_scale = bool(trainable_scale)

    def _build_params(self, kernel_shape):
        self._reduce_axes = tuple(range(len(kernel_shape) - 1))
        self.kernel_v = self.add_weight(
            name="kernel_v", shape=kernel_shape, initializer=self.kernel_initializer,
            trainable=True)
        reduce_axes = self._reduce_axes
        v_var = self.kernel_v

        def norm_of_v(shape, dtype=None):
            value = ops.convert_to_tensor(v_var.value)
            return ops.cast(ops.sqrt(ops.sum(ops.square(value), axis=reduce_axes)), dtype)

        self.g = self.add_weight(name="g", shape=(kernel_shape[-1],), initializer=norm_of_v,
                                 trainable=self.trainable_scale)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(kernel_shape[-1],),
                                        initializer=self.bias_initializer, trainable=True)
        else:
            self.bias = None

    @property
    def kernel(self):
        """The effective (normalised) kernel ``g * v / ||v||``."""
        return _weight_norm_kernel(ops.convert_to_tensor(self.kernel_v), self.g,
                                   self._reduce_axes, self.epsilon)

    # Set by weight_norm_data_init for one eager pass: the std of every output unit after it.
    _data_init_scale = None

    def _finish(self, outputs):
        if self._data_init_scale is not None:
            outputs = self._initialize_from(outputs, self._data_init_scale)
        if self.bias is not None:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def _initialize_from(self, outputs, scale):
        """Data-dependent initialisation (Salimans & Kingma, section 3): ``g`` and the bias
        such that each output unit, before the nonlinearity, has mean 0 and std ``scale`` on
        this batch; returns the pre-bias outputs under the new ``g``."""
        axes = tuple(range(len(outputs.shape) - 1))
        mean = ops.mean(outputs, axis=axes)
        std = ops.sqrt(ops.var(outputs, axis=axes) + 1e-8)
        factor = scale / std
        self.g.assign(ops.cast(self.g * ops.cast(factor, self.g.dtype), self.g.dtype))
        if self.bias is not None:
            self.bias.assign(ops.cast(-mean * factor, self.bias.dtype))
        return outputs * ops.cast(factor, outputs.dtype)

    def _kernel_in(self, dtype):
        # Normalise in the variable dtype (float32), then cast to compute dtype.
        return ops.cast(self.kernel, dtype)

    def get_config(self):
        config = super().get_config()
        config.update({
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "epsilon": self.epsilon,
            "trainable_scale": self.trainable_scale,
        })
        return config


@keras.saving.register_keras_serializable(package="tf_advssl")
class WeightNormDense(_WeightNormBase):
    """Dense layer with weight normalisation: ``y = x @ (g * v / ||v||_col) + b``.

    The kernel ``v`` has shape ``(input_dim, units)``; the norm is taken over
    the input axis, so column ``j`` of the effective kernel has norm ``g[j]``.
    See :class:`_WeightNormBase` for initialisation (no data-dependent init).
    """

    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        self.units = self._out

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError("WeightNormDense needs a known last input dimension")
        self._build_params((int(input_dim), self.units))

    def call(self, inputs):
        return self._finish(ops.matmul(inputs, self._kernel_in(inputs.dtype)))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config


@keras.saving.register_keras_serializable(package="tf_advssl")
class WeightNormConv2D(_WeightNormBase):
    """2-D convolution (channels_last) with weight normalisation.

    The kernel ``v`` has shape ``(kh, kw, in_channels, filters)``; the norm is
    taken over ``(kh, kw, in_channels)``, so each filter of the effective
    kernel has norm ``g[j]``.  No data-dependent init (see
    :class:`_WeightNormBase`).
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 dilation_rate=(1, 1), **kwargs):
        super().__init__(filters, **kwargs)
        self.filters = self._out
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"WeightNormConv2D expects (batch, H, W, C) with known C, got {input_shape}")
        self._build_params(self.kernel_size + (int(input_shape[-1]), self.filters))

    def call(self, inputs):
        outputs = ops.conv(inputs, self._kernel_in(inputs.dtype), strides=self.strides,
                           padding=self.padding, data_format="channels_last",
                           dilation_rate=self.dilation_rate)
        return self._finish(outputs)

    def compute_output_shape(self, input_shape):
        batch, *spatial, _ = input_shape
        out = []
        for size, k, s, d in zip(spatial, self.kernel_size, self.strides, self.dilation_rate):
            if size is None:
                out.append(None)
            elif self.padding == "same":
                out.append(-(-size // s))
            else:
                out.append((size - d * (k - 1) - 1) // s + 1)
        return (batch, *out, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
        })
        return config


WEIGHT_NORM_LAYERS = (WeightNormDense, WeightNormConv2D)


def _pair(value, name):
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {value}")
    return value


def weight_norm_data_init(model, x, scale: float = 1.0) -> int:
    """The data-dependent initialisation of Salimans & Kingma (2016, section 3) for every
    weight-normalised layer of ``model``: in one eager inference pass over the batch ``x``,
    each layer in turn sets ``g`` and its bias so that its outputs before the nonlinearity
    have mean 0 and std ``scale`` per unit on ``x`` (given the layers before it, already
    initialised).  Noise layers add nothing at inference.  Returns the number of layers set."""
    found = layers_of(model, WEIGHT_NORM_LAYERS)
    for layer in found:
        layer._data_init_scale = float(scale)
    try:
        model(x, training=False)
    finally:
        for layer in found:
            layer._data_init_scale = None
    return len(found)
