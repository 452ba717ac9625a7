"""Raw inputs -> model space (scale, centre, optional ZCA), in TensorFlow, and the training-time
augmentation layers."""
from __future__ import annotations

from typing import Optional
import keras
import numpy as np
import tensorflow as tf

from tf_advssl.data.spec import DataSpec


ZCA_EPSILON = 0.1


class Preprocessor:
    """Raw inputs -> model space, in TensorFlow.

    ``x = cast(x_raw, float32) * scale - mean``, then (if a ZCA matrix is set)
    ``x = x_flat @ zca_matrix`` reshaped back.  ``mean`` has shape ``(D,)`` with
    ``D = prod(input_shape)`` and ``zca_matrix`` shape ``(D, D)``.  Inputs may
    have any leading (batch) dimensions followed by ``input_shape``.  Constants
    are kept as numpy and converted at call time, so the object can be captured
    by a ``tf.function`` or a SavedModel signature.
    """

    def __init__(self, scale: float = 1.0, mean: Optional[np.ndarray] = None,
                 zca_matrix: Optional[np.ndarray] = None, input_shape: tuple = ()):
        self.scale = float(scale)
        self.mean = None if mean is None else np.asarray(mean, np.float32).reshape(-1)
        self.zca_matrix = None if zca_matrix is None else np.asarray(zca_matrix, np.float32)
        self.input_shape = tuple(int(n) for n in input_shape)
        if (self.mean is not None or self.zca_matrix is not None) and not self.input_shape:
            raise ValueError("Preprocessor with a mean or ZCA matrix needs input_shape")
        dim = int(np.prod(self.input_shape)) if self.input_shape else 0
        if self.mean is not None and self.mean.shape != (dim,):
            raise ValueError(f"mean has shape {self.mean.shape}, expected ({dim},)")
        if self.zca_matrix is not None and self.zca_matrix.shape != (dim, dim):
            raise ValueError(f"zca_matrix has shape {self.zca_matrix.shape}, expected ({dim}, {dim})")

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and self.mean is None and self.zca_matrix is None

    def __call__(self, x_raw) -> tf.Tensor:
        x = tf.cast(x_raw, tf.float32)
        if self.scale != 1.0:
            x = x * self.scale
        if self.mean is None and self.zca_matrix is None:
            return x
        shape = tf.shape(x)
        flat = tf.reshape(x, [-1, int(np.prod(self.input_shape))])
        if self.mean is not None:
            flat = flat - tf.constant(self.mean)
        if self.zca_matrix is not None:
            flat = tf.matmul(flat, tf.constant(self.zca_matrix))
        return tf.reshape(flat, shape)

    def save(self, path: str) -> None:
        """Writes an .npz file at exactly ``path``."""
        empty = np.zeros((0,), np.float32)
        with open(path, "wb") as f:
            np.savez(f, scale=np.float64(self.scale),
                     mean=empty if self.mean is None else self.mean,
                     zca_matrix=empty if self.zca_matrix is None else self.zca_matrix,
                     input_shape=np.asarray(self.input_shape, np.int64))

    @classmethod
    def load(cls, path: str) -> "Preprocessor":
        with np.load(path) as f:
            mean, zca = f["mean"], f["zca_matrix"]
            return cls(scale=float(f["scale"]), mean=mean if mean.size else None,
                       zca_matrix=zca if zca.size else None,
                       input_shape=tuple(int(n) for n in f["input_shape"]))

    @classmethod
    def fit(cls, x_train_raw: np.ndarray, spec: DataSpec, zca: bool,
            zca_epsilon: float = ZCA_EPSILON) -> "Preprocessor":
        """Preprocessor for a training set.

        Images: ``scale = 1/255``; with ``zca`` also the per-feature mean of the
        scaled training images and the ZCA matrix ``U diag(1/sqrt(S + eps)) U^T``
        of their covariance (``eps = 0.1`` as in the official VAT code).
        Feature vectors (incl. the 2-D synthetic sets): identity; ``zca`` is ignored.

        Args:
          x_train_raw: raw training inputs, shape ``(N,) + spec.input_shape``.
        """
        if not spec.is_image:
            return cls(input_shape=spec.input_shape)
        scale = 1.0 / 255.0
        if not zca:
            return cls(scale=scale, input_shape=spec.input_shape)
        mean, matrix = zca_whitening(x_train_raw, scale, zca_epsilon)
        return cls(scale=scale, mean=mean, zca_matrix=matrix, input_shape=spec.input_shape)


def zca_whitening(x, scale: float = 1.0, epsilon: float = ZCA_EPSILON,
                  chunk_size: int = 4096):
    """Mean ``(D,)`` and ZCA matrix ``(D, D)`` of ``x * scale``, ``x`` of shape ``(N, ...)``
    with ``D`` the product of the trailing dimensions.

    The covariance is accumulated over chunks (float32 products, float64
    sums), so a large uint8 set (possibly streamed from disk) is never converted
    to float, or read, as a whole.
    """
    n = len(x)
    dim = int(np.prod(x.shape[1:]))

    def chunk(start):
        return np.asarray(x[start:start + chunk_size]).reshape(-1, dim).astype(np.float64) * scale

    total = np.zeros((dim,), np.float64)
    for start in range(0, n, chunk_size):
        total += chunk(start).sum(axis=0)
    mean = total / n
    cov = np.zeros((dim, dim), np.float64)
    for start in range(0, n, chunk_size):
        centred = (chunk(start) - mean).astype(np.float32)
        cov += centred.T @ centred
    cov /= n
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    matrix = (eigenvectors * (1.0 / np.sqrt(eigenvalues + epsilon))) @ eigenvectors.T
    return mean.astype(np.float32), matrix.astype(np.float32)


def make_augmentation(spec: DataSpec, translate: int, flip: bool, seed: int) -> Optional[keras.Sequential]:
    """Random translation / horizontal flip applied in model space during training.

    ``RandomTranslation`` by up to ``translate`` pixels (nearest interpolation,
    zero fill: like the pad-and-crop of the official VAT code, whose zero padding
    is in model space) and ``RandomFlip("horizontal")`` if ``flip``.  Input and
    output ``(batch,) + input_shape`` (NHWC).  Returns None for non-image data
    or when nothing is enabled.  Layers only act when called with
    ``training=True``.
    """
    if not spec.is_image or (not translate and not flip):
        return None
    height, width = spec.input_shape[0], spec.input_shape[1]
    layers = []
    if translate:
        layers.append(keras.layers.RandomTranslation(
            height_factor=translate / height, width_factor=translate / width, fill_mode="constant",
            fill_value=0.0, interpolation="nearest", seed=seed, data_format="channels_last"))
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 1, data_format="channels_last"))
    return keras.Sequential(layers, name="augmentation")
