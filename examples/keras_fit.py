"""A method of tf_advssl on your own Keras classifier and data, with ``model.fit``.

    python examples/keras_fit.py                      # VAT on sklearn's 8x8 digits, 50 labels
    python examples/keras_fit.py --method=fixmatch --epochs=3 --workdir=/tmp/fit_example

Any Keras classifier that returns logits works; the method wraps it, ``model.fit`` trains it
on the stream of ``tf_advssl.data.ssl_dataset``, ``model.evaluate`` reports the test error in
percent, and ``tf_advssl.export.export_saved_model`` writes a SavedModel for TensorFlow Serving
(signatures ``serving_default`` and ``robust_predict``).  Stop it and run it again: the
BackupAndRestore callback resumes from the last finished epoch.
"""
import os
import sys

import keras
import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import tf_advssl  # noqa: E402



def load_digits(num_labeled, seed):
    """sklearn's digits as float images in [0, 1]: a labeled subset (balanced), the whole
    training set as unlabeled data, and the test set."""
    x_train, y_train, x_test, y_test = tf_advssl.data.load_digits_arrays()
    x_train, x_test = x_train.astype("float32") / 255.0, x_test.astype("float32") / 255.0
    rng = np.random.RandomState(seed)
    per_class = num_labeled // 10
    labeled = np.concatenate([rng.choice(np.flatnonzero(y_train == k), per_class, replace=False) for k in range(10)])
    return (x_train[labeled], y_train[labeled]), x_train, (x_test, y_test)


def classifier(input_shape, seed):
    init = lambda i: keras.initializers.HeNormal(seed + i)  # noqa: E731
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer=init(0)),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu", kernel_initializer=init(1)),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10, kernel_initializer=init(2)),  # logits
    ])


def train(method, num_labeled=50, steps_per_epoch=200, epochs=5, workdir="/tmp/tf_advssl_keras_fit", seed=0,
          callbacks=()):
    """Train ``tf_advssl.methods.<method>`` on digits; returns (model, test error %, export path)."""
    keras.utils.set_random_seed(seed)
    (x_l, y_l), x_u, (x_test, y_test) = load_digits(num_labeled, seed)
    model = getattr(tf_advssl.methods, method)(classifier(x_l.shape[1:], seed), seed=seed,
                                               total_steps=steps_per_epoch * epochs,  # for ramp-ups
                                               num_train_examples=len(x_u))  # for per-example state
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    ds = tf_advssl.data.ssl_dataset((x_l, y_l), x_u, batch_size=32, unlabeled_batch_size=128, seed=seed)
    backup = keras.callbacks.BackupAndRestore(os.path.join(workdir, "backup"))
    model.fit(ds, steps_per_epoch=steps_per_epoch, epochs=epochs, verbose=2, callbacks=[backup, *callbacks])
    error = model.evaluate(x_test, y_test, verbose=0, return_dict=True)["error"]
    return model, error, tf_advssl.export.export_saved_model(model, os.path.join(workdir, "export"))


def define_flags():
    flags.DEFINE_string("method", "VAT", "A class of tf_advssl.methods, e.g. VAT, XVAT, AdvMixup, FixMatch.")
    flags.DEFINE_integer("num_labeled", 50, "Labeled training images (5 per class).")
    flags.DEFINE_integer("steps_per_epoch", 200, "Steps per epoch.")
    flags.DEFINE_integer("epochs", 5, "Epochs.")
    flags.DEFINE_string("workdir", "/tmp/tf_advssl_keras_fit", "Backups (BackupAndRestore) and the export.")
    flags.DEFINE_integer("seed", 0, "Seed of the weights, the labeled subset and the batches.")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    _, error, path = train(FLAGS.method, FLAGS.num_labeled, FLAGS.steps_per_epoch, FLAGS.epochs, FLAGS.workdir,
                           FLAGS.seed)
    print(f"{FLAGS.method}: test error {error:.2f} % with {FLAGS.num_labeled} labels; exported to {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
