"""Datasets, semi-supervised splits, preprocessing and input pipelines.

Modules: ``spec`` (what describes a data set), ``sources`` (where raw arrays come from),
``arrays`` (arrays on disk and reading their rows), ``preprocessing``, ``splits`` (``load``,
``validate``) and ``pipeline`` (tf.data streams).  Their public names are importable from here.

Pipeline
--------
1. :func:`validate` runs cheap checks on the (possibly unresolved) config before
   any work starts.
2. :func:`load` reads a dataset as *raw* arrays (uint8 NHWC images or
   float32 feature vectors), removes an optional validation split from the
   training set, picks the labeled subset (balanced per class if requested) with
   ``np.random.RandomState(config.split_seed)``, and fits a
   :class:`Preprocessor` on the raw training images.  The unlabeled set is the
   whole training set (labels unused).
3. :func:`train_dataset` turns an :class:`SSLData` into an infinite
   ``tf.data`` stream of ``((x_l, y_l), (x_u, idx_u))`` batches that is a pure
   function of ``(seed, step)``, so a resumed run sees exactly the batches an
   uninterrupted run would.  :func:`eval_dataset` yields ``(x, y)`` in order.
4. The :class:`Preprocessor` (raw -> model space: scale, centre, optional ZCA)
   is plain TensorFlow, so the same object runs in the input pipeline, inside
   ``tf.function`` and inside an exported SavedModel (which takes raw inputs).
   Attacks work in raw space, where ``DataSpec.pixel_range`` is the valid range.
5. :func:`make_augmentation` builds the Keras augmentation layers that the
   training step applies in model space.

Memory: the inputs of tensorflow-datasets sets and of ``npz:DIR`` (``.npy``
files) stay on disk.  tfds splits are written once, batch by batch, to
``.npy`` files under ``<data_dir>/tf_advssl_arrays/``, whose rows are read on
access with ``os.pread`` (:class:`NpyRows`: no memory map, so nothing of the
file counts towards the process's memory); the pipelines read only the rows of
each batch (``tf.numpy_function``), so the process holds a few batches, the
labels (8 bytes per example) and the index permutations, however large the
dataset.  Small in-memory arrays (synthetic sets, ``npz:FILE.npz``,
``folder:``) are gathered inside the graph instead.

Dataset names: ``two_circles`` and ``moons`` (sklearn), any tensorflow-datasets
image-classification builder (``mnist``, ``fashion_mnist``, ``svhn_cropped``,
``cifar10``, ``cifar100``, ...), ``npz:PATH`` and ``folder:PATH`` (see
:func:`load`).
"""
from tf_advssl.data.spec import (DIGITS, DIGITS_SPLIT_SEED, DIGITS_TEST_SIZE, FOLDER_PREFIX, NPZ_PREFIX,
                                 STANDARD_TFDS_DATASETS, SYNTHETIC_DATASETS, DataSpec, InputInfo)
from tf_advssl.data.arrays import (ARRAY_CACHE_DIR, NpyRows, Rows, check_finite, column_range, eps_space_note,
                                   input_bounds, is_streamed, row_reader, select_rows)
from tf_advssl.data.preprocessing import Preprocessor, make_augmentation, zca_whitening
from tf_advssl.data.sources import describe, load_digits_arrays
from tf_advssl.data.splits import SSLData, choose_labeled, load, validate
from tf_advssl.data.pipeline import EVAL_SPLITS, eval_dataset, index_stream, input_batches, ssl_dataset, train_dataset

__all__ = [
    "ARRAY_CACHE_DIR",
    "DIGITS",
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_SIZE",
    "DataSpec",
    "EVAL_SPLITS",
    "FOLDER_PREFIX",
    "InputInfo",
    "NPZ_PREFIX",
    "NpyRows",
    "Preprocessor",
    "Rows",
    "SSLData",
    "STANDARD_TFDS_DATASETS",
    "SYNTHETIC_DATASETS",
    "check_finite",
    "choose_labeled",
    "column_range",
    "describe",
    "eps_space_note",
    "eval_dataset",
    "index_stream",
    "input_batches",
    "input_bounds",
    "is_streamed",
    "load",
    "load_digits_arrays",
    "make_augmentation",
    "row_reader",
    "select_rows",
    "ssl_dataset",
    "train_dataset",
    "validate",
    "zca_whitening",
]
