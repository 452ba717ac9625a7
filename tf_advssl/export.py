"""SavedModel export for TensorFlow Serving.

``export/<version>/`` is the ``--model_base_path`` layout TF Serving expects.
The ``serving_default`` signature takes raw inputs (uint8 images of the
dataset's shape, or float32 feature vectors) under the name ``inputs`` and
returns ``probabilities`` (float32, batch x classes) and ``classes`` (int64);
preprocessing (scaling, mean, ZCA) is part of the graph.
"""
from __future__ import annotations

import os

import keras
import tensorflow as tf


def next_version(export_base: str) -> int:
    """1 + the largest integer version directory under ``export_base`` (1 if none)."""
    if not os.path.isdir(export_base):
        return 1
    versions = [int(name) for name in os.listdir(export_base) if name.isdigit()]
    return max(versions, default=0) + 1


def serving_input_spec(spec) -> tf.TensorSpec:
    dtype = tf.uint8 if spec.raw_dtype == "uint8" else tf.float32
    return tf.TensorSpec((None,) + tuple(spec.input_shape), dtype, name="inputs")


def export_saved_model(predict_logits, spec, preprocessor, export_base: str, version: int | None = None,
                       track=None) -> str:
    """Write a SavedModel whose ``serving_default`` maps raw inputs to probabilities/classes.

    Args:
      predict_logits: keras model (inference mode) mapping model-space inputs to logits.
      spec: the run's DataSpec. preprocessor: raw -> model-space Preprocessor.
      export_base: the ``export`` directory; ``version`` defaults to the next free number.
    Returns the path of the version directory. Refuses an existing version directory.
    """
    version = next_version(export_base) if version is None else int(version)
    path = os.path.join(export_base, str(version))
    if os.path.exists(path):
        raise FileExistsError(f"export version directory {path} already exists; "
                              f"choose another version (next free: {next_version(export_base)})")

    def serve(inputs):
        logits = tf.cast(predict_logits(preprocessor(inputs), training=False), tf.float32)
        return {"probabilities": tf.nn.softmax(logits),
                "classes": tf.argmax(logits, axis=-1, output_type=tf.int64)}

    archive = keras.export.ExportArchive()
    archive.track(track if track is not None else predict_logits)
    archive.add_endpoint("serving_default", serve, input_signature=[serving_input_spec(spec)])
    os.makedirs(export_base, exist_ok=True)
    archive.write_out(path, verbose=False)
    return path


def export_run_model(model, spec, preprocessor, export_base: str, version: int | None = None) -> str:
    """Export the model a run evaluates (its EMA teacher when ``eval_ema``)."""
    network = model.teacher if (model.eval_ema and model.teacher is not None) else model.classifier
    return export_saved_model(network, spec, preprocessor, export_base, version)
