"""SavedModel export for TensorFlow Serving.

``export/<version>/`` is the ``--model_base_path`` layout TF Serving expects.
The ``serving_default`` signature takes raw inputs (uint8 images of the
dataset's shape, or float32 feature vectors) under the name ``inputs`` and
returns ``probabilities`` (float32, batch x classes) and ``classes`` (int64);
preprocessing (scaling, mean, ZCA) is part of the graph.

The ``robust_predict`` signature takes the same ``inputs`` and ``eps`` (float32,
one per example, in raw input units: pixel values 0..255 for images, e.g. 8.0
for 8/255) and also returns ``survives`` (bool): whether the predicted class is
still predicted after one FGSM step of size eps against it (the SCAR criterion,
``perturbations.prediction_survives``), taken in raw input space through the
preprocessing and clipped to the raw range (0..255 for images; unclipped
vectors).  Signatures have no default values: a client always sends ``eps``.

Inputs of another dtype or shape are rejected by the signature before any
computation (TF Serving answers with an error naming the expected dtype or
shape); ``tf_advssl.serving.check_inputs`` gives the same check client-side.
"""
from __future__ import annotations

import os
import shutil

import keras
import tensorflow as tf

from tf_advssl import perturbations
from tf_advssl.data import DataSpec

SIGNATURES = ("serving_default", "robust_predict")


# An export is written under this prefix in the export directory and renamed to its version
# when complete; TF Serving only serves names that are integers.
PARTIAL_PREFIX = ".partial-"


def next_version(export_base: str) -> int:
    """1 + the largest integer version directory under ``export_base`` (1 if none)."""
    if not os.path.isdir(export_base):
        return 1
    versions = [int(name) for name in os.listdir(export_base) if name.isdigit()]
    return max(versions, default=0) + 1


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_partial_exports(export_base: str) -> list:
    """Delete what interrupted exports left under ``export_base`` (``.partial-<pid>-<n>``
    directories of processes no longer running); returns the paths removed."""
    removed = []
    if not os.path.isdir(export_base):
        return removed
    for name in os.listdir(export_base):
        if not name.startswith(PARTIAL_PREFIX):
            continue
        pid = name[len(PARTIAL_PREFIX):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and _process_alive(int(pid)):
            continue
        path = os.path.join(export_base, name)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def serving_input_spec(spec) -> tf.TensorSpec:
    dtype = tf.uint8 if spec.raw_dtype == "uint8" else tf.float32
    return tf.TensorSpec((None,) + tuple(spec.input_shape), dtype, name="inputs")


def check_shape(inputs, spec):
    """An assertion op: ``inputs`` has shape (batch,) + spec.input_shape, with a message
    naming the expected and the received shape (a serving signature does not check it)."""
    expected = tf.constant(spec.input_shape, tf.int32)
    shape = tf.shape(inputs)
    rank_ok = tf.equal(tf.size(shape), len(spec.input_shape) + 1)
    padded = tf.concat([shape[1:], tf.zeros([len(spec.input_shape)], tf.int32)], 0)[:len(spec.input_shape)]
    ok = tf.logical_and(rank_ok, tf.reduce_all(tf.equal(padded, expected)))
    return tf.debugging.Assert(ok, [f"inputs must have shape (batch, {', '.join(map(str, spec.input_shape))}) "
                                    f"and dtype {serving_input_spec(spec).dtype.name}; got shape", shape],
                               summarize=len(spec.input_shape) + 4)


def evaluated_network(model) -> keras.Model:
    """The network a model is evaluated with: an SSLModel's ``evaluated_network()``; any
    other Keras model is its own."""
    return model.evaluated_network() if hasattr(model, "evaluated_network") else model


def input_spec_of(network):
    """The DataSpec of a network's own inputs: float32 vectors or images of its input shape,
    unclipped (no pixel range); used when an export is given no spec."""
    shape = tuple(int(d) for d in network.input_shape[1:])
    return DataSpec(name="inputs", input_shape=shape, num_classes=int(network.output_shape[-1]),
                    raw_dtype="float32", pixel_range=None, is_image=len(shape) == 3)


def export_saved_model(model, export_base: str, *, spec=None, preprocessor=None, version: int | None = None) -> str:
    """Write a SavedModel whose ``serving_default`` maps raw inputs to probabilities/classes
    (and ``robust_predict`` as the module docstring says) to ``export_base/<version>``.

    Args:
      model: an SSLModel (its evaluated network is exported: the EMA teacher when it
        evaluates one) or any Keras classifier that returns logits.
      export_base: the ``export`` directory; ``version`` defaults to the next free number.
      spec: the DataSpec of the raw inputs; default: float32 inputs of the network's shape.
      preprocessor: raw -> model-space inputs (a run's Preprocessor); default: none.
    Returns the path of the version directory. Refuses an existing version directory.
    The SavedModel is written beside it under a temporary name and renamed into place, so
    the version directory appears complete or not at all; leftovers of interrupted exports
    are removed first.
    """
    predict_logits = evaluated_network(model)
    spec = spec if spec is not None else input_spec_of(predict_logits)
    preprocessor = preprocessor if preprocessor is not None else (lambda x: tf.cast(x, tf.float32))
    version = next_version(export_base) if version is None else int(version)
    path = os.path.join(export_base, str(version))
    if os.path.exists(path):
        raise FileExistsError(f"export version directory {path} already exists; "
                              f"choose another version (next free: {next_version(export_base)})")

    def raw_logits(inputs):
        with tf.control_dependencies([check_shape(inputs, spec)]):
            inputs = tf.identity(inputs)
        return tf.cast(predict_logits(preprocessor(inputs), training=False), tf.float32)

    def serve(inputs):
        logits = raw_logits(inputs)
        return {"probabilities": tf.nn.softmax(logits),
                "classes": tf.argmax(logits, axis=-1, output_type=tf.int64)}

    clip_min, clip_max = spec.pixel_range if spec.pixel_range is not None else (None, None)

    def robust_predict(inputs, eps):
        raw = tf.cast(inputs, tf.float32)
        eps = tf.reshape(eps, [-1] + [1] * len(spec.input_shape))
        outputs = serve(raw)
        _, outputs["survives"] = perturbations.prediction_survives(raw_logits, raw, eps, norm="linf",
                                                                   clip_min=clip_min, clip_max=clip_max)
        return outputs

    archive = keras.export.ExportArchive()
    archive.track(predict_logits)
    archive.add_endpoint("serving_default", serve, input_signature=[serving_input_spec(spec)])
    archive.add_endpoint("robust_predict", robust_predict,
                         input_signature=[serving_input_spec(spec), tf.TensorSpec((None,), tf.float32, name="eps")])
    os.makedirs(export_base, exist_ok=True)
    remove_partial_exports(export_base)
    partial = os.path.join(export_base, f"{PARTIAL_PREFIX}{os.getpid()}-{version}")
    archive.write_out(partial, verbose=False)
    try:
        os.rename(partial, path)  # atomic: TF Serving sees the version complete or not at all
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        raise FileExistsError(f"export version directory {path} already exists; "
                              f"choose another version (next free: {next_version(export_base)})") from None
    return path
