"""Datasets, semi-supervised splits, preprocessing and input pipelines.

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
from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tf_advssl.config import ConfigError

SYNTHETIC_DATASETS = ("two_circles", "moons")
# sklearn's 8x8 handwritten digits (load_digits, 1797 images of 10 classes, pixel values
# 0..16 scaled to 0..255): a real image set that needs no download.  The train/test split
# is fixed (DIGITS_TEST_SIZE images, stratified by class, seed DIGITS_SPLIT_SEED) and does
# not depend on --split_seed, which draws the labeled subset as for any other set.
DIGITS = "digits"
DIGITS_TEST_SIZE = 400
DIGITS_SPLIT_SEED = 0
STANDARD_TFDS_DATASETS = ("mnist", "fashion_mnist", "svhn_cropped", "cifar10", "cifar100")
NPZ_PREFIX = "npz:"
FOLDER_PREFIX = "folder:"
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
# folder: datasets without train/ and test/ sub-folders: this fraction of each
# class (at least one image when the class has two or more) becomes the test set.
FOLDER_TEST_FRACTION = 0.2
FOLDER_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
ZCA_EPSILON = 0.1
# tfds splits are written here (under --data_dir, or tfds' default) as .npy files.
ARRAY_CACHE_DIR = "tf_advssl_arrays"
# In-memory arrays up to this size are gathered inside the tf.data graph; larger
# ones and streamed ones through tf.numpy_function (only the batch's rows are read).
IN_GRAPH_BYTES = 32 * 2 ** 20
# Epoch seeds of the two streams of train_dataset: [seed, offset + epoch].
LABELED_STREAM_OFFSET = 0
UNLABELED_STREAM_OFFSET = 2 ** 40

_ALLOWED_DATASETS_TEXT = (
    f"{', '.join(SYNTHETIC_DATASETS + (DIGITS,) + STANDARD_TFDS_DATASETS)}, any other tensorflow-datasets "
    f"image-classification builder, {NPZ_PREFIX}PATH or {FOLDER_PREFIX}PATH")


# ---------------------------------------------------------------------------
# Spec and preprocessing.

@dataclasses.dataclass
class DataSpec:
    """What the model and the attacks need to know about a dataset's raw inputs."""
    name: str                       # as given by the user, e.g. "mnist" or "npz:/p/x.npz"
    input_shape: tuple              # per-example raw shape, e.g. (28, 28, 1) or (2,)
    num_classes: int
    raw_dtype: str                  # "uint8" (images) or "float32" (feature vectors)
    pixel_range: Optional[tuple]    # (0, 255) for uint8 images, None for vectors
    is_image: bool

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["pixel_range"] = None if self.pixel_range is None else list(self.pixel_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        d = dict(d)
        d["input_shape"] = tuple(int(n) for n in d["input_shape"])
        if d.get("pixel_range") is not None:
            d["pixel_range"] = tuple(d["pixel_range"])
        return cls(**d)


def _image_spec(name: str, input_shape, num_classes: int) -> DataSpec:
    return DataSpec(name=name, input_shape=tuple(int(n) for n in input_shape),
                    num_classes=int(num_classes), raw_dtype="uint8", pixel_range=(0, 255),
                    is_image=True)


def _vector_spec(name: str, input_shape, num_classes: int) -> DataSpec:
    return DataSpec(name=name, input_shape=tuple(int(n) for n in input_shape),
                    num_classes=int(num_classes), raw_dtype="float32", pixel_range=None,
                    is_image=False)


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


# ---------------------------------------------------------------------------
# Loaded data.

class Rows:
    """The rows ``base[indices]`` of an array (typically :class:`NpyRows`), read on
    access instead of copied.

    Supports what the package does with raw inputs: ``len``, ``shape``,
    ``dtype``, ``ndim``, indexing by an integer, a slice, an index array or a
    tuple whose first element selects rows (each returns an ndarray), and
    ``np.asarray`` (reads every row: only for small sets).
    """

    def __init__(self, base, indices):
        self.base = base
        self.indices = np.asarray(indices, np.int64)

    def __len__(self):
        return len(self.indices)

    @property
    def shape(self):
        return (len(self.indices),) + tuple(self.base.shape[1:])

    @property
    def dtype(self):
        return self.base.dtype

    @property
    def ndim(self):
        return self.base.ndim

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        rows = self.indices[first]
        if np.ndim(rows) == 0:
            return np.asarray(self.base[int(rows)])[rest]
        return np.asarray(self.base[rows])[(slice(None),) + rest]

    def __array__(self, dtype=None, copy=None):
        out = np.asarray(self.base[self.indices])
        return out if dtype is None else out.astype(dtype)


def is_streamed(x) -> bool:
    """True if ``x`` is read from disk on access (NpyRows, a memory map, or Rows of one)."""
    return isinstance(x, (NpyRows, np.memmap, Rows))


def select_rows(x, indices):
    """``x[indices]``: a copy for in-memory arrays, :class:`Rows` for streamed ones."""
    if isinstance(x, Rows):
        return Rows(x.base, x.indices[indices])
    if is_streamed(x):
        return Rows(x, indices)
    return x[indices]


def column_range(x, chunk_size: int = 65536):
    """Per-feature ``(min, max)`` over the rows of ``x``, read in chunks."""
    low = high = None
    for start in range(0, len(x), chunk_size):
        block = np.asarray(x[start:start + chunk_size], np.float32)
        block_low, block_high = block.min(axis=0), block.max(axis=0)
        low = block_low if low is None else np.minimum(low, block_low)
        high = block_high if high is None else np.maximum(high, block_high)
    return low, high

@dataclasses.dataclass
class SSLData:
    """A dataset split for semi-supervised learning; all arrays are raw.

    ``x_*`` are numpy arrays, :class:`NpyRows` (read from disk on access) or
    :class:`Rows` of one
    (streamed data, see the module docstring); labels are in memory.
    """
    spec: DataSpec
    x_train: np.ndarray             # (N,) + input_shape, uint8 or float32
    y_train: np.ndarray             # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: Optional[np.ndarray]
    y_val: Optional[np.ndarray]
    labeled_indices: np.ndarray     # (num_labeled,) int64 indices into x_train
    preprocessor: Preprocessor

    @property
    def num_labeled(self) -> int:
        return int(len(self.labeled_indices))

    @property
    def num_unlabeled(self) -> int:
        """The unlabeled set is the whole training set (labels ignored)."""
        return int(len(self.x_train))


def _dataset_kind(name: str) -> str:
    if name in SYNTHETIC_DATASETS:
        return "synthetic"
    if name == DIGITS:
        return "digits"
    if name.startswith(NPZ_PREFIX):
        return "npz"
    if name.startswith(FOLDER_PREFIX):
        return "folder"
    return "tfds"


def _tfds_base_name(name: str) -> str:
    """"cifar10:3.0.2" or "name/config:1.0.0" -> the registered builder name."""
    return name.split(":")[0].split("/")[0]


def validate(config) -> None:
    """Cheap checks of the data flags; raises ConfigError naming the flag.

    Works on an unresolved config (``None`` fields are skipped).  Does not load
    or download anything; for tfds names other than the standard ones it builds
    the (metadata-only) builder to check that it is an image-classification set.
    """
    name = config.dataset
    kind = _dataset_kind(name)
    if kind == "npz":
        path = name[len(NPZ_PREFIX):]
        if not (os.path.isfile(path) or os.path.isdir(path)):
            raise ConfigError(f"--dataset={name}: {path!r} does not exist (expected an .npz file with "
                              f"arrays {', '.join(NPZ_KEYS)}, or a directory of .npy files of those names)")
    elif kind == "folder":
        path = name[len(FOLDER_PREFIX):]
        if not os.path.isdir(path):
            raise ConfigError(f"--dataset={name}: directory {path!r} does not exist "
                              f"(expected one sub-folder of images per class)")
    elif kind == "tfds" and name not in STANDARD_TFDS_DATASETS:
        import tensorflow_datasets as tfds
        if _tfds_base_name(name) not in tfds.list_builders(with_community_datasets=False):
            raise ConfigError(f"--dataset={name!r} is not a known dataset; allowed: {_ALLOWED_DATASETS_TEXT}")
        try:
            builder = tfds.builder(name, data_dir=config.data_dir)
        except Exception as e:  # bad config/version suffix, missing optional dependency...
            raise ConfigError(f"--dataset={name!r}: tensorflow-datasets cannot build it: {e}") from e
        _check_image_classification(builder, name)

    if config.noise is not None and config.noise < 0:
        raise ConfigError(f"--noise must be >= 0, got {config.noise}")
    if config.num_labeled is not None and config.num_labeled <= 0:
        raise ConfigError(f"--num_labeled must be > 0, got {config.num_labeled}")
    if config.validation_size < 0:
        raise ConfigError(f"--validation_size must be >= 0, got {config.validation_size}")
    for flag in ("batch_size", "unlabeled_batch_size", "eval_batch_size",
                 "num_train_synthetic", "num_test_synthetic"):
        value = getattr(config, flag)
        if value is not None and value <= 0:  # None: the dataset's or method's default
            raise ConfigError(f"--{flag} must be > 0, got {value}")
    if config.augment_translate is not None and config.augment_translate < 0:
        raise ConfigError(f"--augment_translate must be >= 0 (pixels), got {config.augment_translate}")
    if config.tfds_manual_dir is not None and not os.path.isdir(config.tfds_manual_dir):
        raise ConfigError(f"--tfds_manual_dir={config.tfds_manual_dir!r} is not a directory")


@dataclasses.dataclass(frozen=True)
class InputInfo:
    """What the defaults of a run depend on, known before the data are read:
    whether the inputs are images, their per-example shape (None where only reading
    the data would tell) and the size of the training set (None if unknown)."""
    is_image: bool
    input_shape: Optional[tuple] = None
    num_train: Optional[int] = None


def _npy_header(fileobj):
    """(shape, dtype) from the header of an open ``.npy`` file."""
    version = np.lib.format.read_magic(fileobj)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fileobj)
    return tuple(shape), np.dtype(dtype)


def describe(config) -> InputInfo:
    """The :class:`InputInfo` of ``config.dataset``, from metadata and array headers only
    (nothing is loaded or prepared); ``validate`` must have passed."""
    import zipfile
    name = config.dataset
    kind = _dataset_kind(name)
    if kind == "synthetic":
        return InputInfo(False, (2,), config.num_train_synthetic)
    if kind == "npz":
        path = name[len(NPZ_PREFIX):]
        if os.path.isdir(path):
            x_path = os.path.join(path, "x_train.npy")
            if not os.path.isfile(x_path):
                return InputInfo(False)  # load() names the missing file
            with open(x_path, "rb") as f:
                shape, dtype = _npy_header(f)
        else:
            try:
                with zipfile.ZipFile(path) as archive, archive.open("x_train.npy") as f:
                    shape, dtype = _npy_header(f)
            except (KeyError, zipfile.BadZipFile, ValueError):
                return InputInfo(False)  # load() explains what the file must hold
        is_image = dtype == np.uint8 and len(shape) in (3, 4)
        input_shape = (shape[1:] if len(shape) == 4 else shape[1:] + (1,)) if is_image else shape[1:]
        return InputInfo(is_image, tuple(int(n) for n in input_shape), int(shape[0]))
    if kind == "digits":
        return InputInfo(True, (8, 8, 1), 1797 - DIGITS_TEST_SIZE)
    if kind == "folder":
        return InputInfo(True)
    if name in STANDARD_TFDS_DATASETS and name in _STANDARD_SHAPES:
        return InputInfo(True, *_STANDARD_SHAPES[name])
    return InputInfo(True)


# Image shape and training-set size of the standard tfds sets (tfds' own metadata).
_STANDARD_SHAPES = {"mnist": ((28, 28, 1), 60000), "fashion_mnist": ((28, 28, 1), 60000),
                    "svhn_cropped": ((32, 32, 3), 73257), "cifar10": ((32, 32, 3), 50000),
                    "cifar100": ((32, 32, 3), 50000)}


def check_finite(name: str, key: str, x, chunk_size: int = 65536) -> None:
    """ConfigError naming the array ``key`` of ``--dataset=name`` and the first row holding
    a NaN or an infinity; float arrays only (integer images cannot hold either)."""
    if not np.issubdtype(x.dtype, np.floating):
        return
    for start in range(0, len(x), chunk_size):
        rows = np.asarray(x[start:start + chunk_size])
        finite = np.isfinite(rows.reshape(len(rows), -1))
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        if len(bad_rows):
            row = bad_rows[0]
            value = rows.reshape(len(rows), -1)[row][~finite[row]][0]
            raise ConfigError(f"--dataset={name}: {key}[{start + row}] holds {value}; every input must be "
                              f"a finite number")


def load(config) -> SSLData:
    """Loads ``config.dataset`` and makes the semi-supervised split.

    ``config`` must be resolved (``config.resolve``).  Steps: read raw train
    and test sets; take ``config.validation_size`` random training examples
    out as the validation set; choose ``config.num_labeled`` labeled examples
    among the rest (``num_labeled / num_classes`` per class when
    ``config.balanced``); fit the Preprocessor on the remaining training set.
    Both random choices use ``np.random.RandomState(config.split_seed)``.

    Dataset formats:
      * ``two_circles`` / ``moons``: sklearn, ``config.num_train_synthetic`` train
        points (random_state ``split_seed``), ``config.num_test_synthetic`` test
        points (random_state ``split_seed + 10000``), float32 (N, 2).
      * tfds names: ``train`` and ``test`` splits of ``tfds.builder(name,
        data_dir=config.data_dir)``; prepared offline from
        ``config.tfds_manual_dir`` if needed; inputs streamed from ``.npy``
        copies (module docstring).
      * ``npz:PATH``: arrays x_train, y_train, x_test, y_test (optional scalar
        num_classes); uint8 images (N, H, W[, C]) or float feature vectors (N, D).
        PATH is an ``.npz`` file (read into memory) or a directory of
        ``x_train.npy``, ... (inputs streamed from disk).
      * ``folder:PATH``: one sub-folder per class (or ``train/`` and ``test/``
        each holding the class sub-folders).  All images are resized to the size
        of the first image (sorted order); grayscale if that image is
        grayscale, else RGB.  Without ``train/``+``test/``, 20 % of each class
        (chosen with ``split_seed``) is the test set.

    Returns: SSLData with raw arrays and the fitted Preprocessor.
    """
    validate(config)
    kind = _dataset_kind(config.dataset)
    loader = {"synthetic": _load_synthetic, "digits": _load_digits, "tfds": _load_tfds,
              "npz": _load_npz, "folder": _load_folder}[kind]
    spec, x_train, y_train, x_test, y_test = loader(config)
    for key, x in (("x_train", x_train), ("x_test", x_test)):
        check_finite(config.dataset, key, x)
    y_train = np.asarray(y_train, np.int64)
    y_test = np.asarray(y_test, np.int64)
    for split, y in (("train", y_train), ("test", y_test)):
        if len(y) and (y.min() < 0 or y.max() >= spec.num_classes):
            raise ConfigError(f"--dataset={config.dataset}: {split} labels must lie in "
                              f"[0, {spec.num_classes}), got [{y.min()}, {y.max()}]")
    if config.zca and not spec.is_image:
        raise ConfigError(f"--zca applies to image datasets only; --dataset={config.dataset} "
                          f"holds feature vectors")

    rng = np.random.RandomState(config.split_seed)
    x_val = y_val = None
    if config.validation_size > 0:
        if config.validation_size >= len(x_train):
            raise ConfigError(f"--validation_size={config.validation_size} must be smaller than the "
                              f"training set ({len(x_train)} examples)")
        order = rng.permutation(len(x_train))
        val_idx = np.sort(order[:config.validation_size])
        train_idx = np.sort(order[config.validation_size:])
        x_val, y_val = select_rows(x_train, val_idx), y_train[val_idx]
        x_train, y_train = select_rows(x_train, train_idx), y_train[train_idx]

    labeled_indices = choose_labeled(y_train, config.num_labeled, spec.num_classes,
                                     config.balanced, rng)
    preprocessor = Preprocessor.fit(x_train, spec, zca=bool(config.zca))
    return SSLData(spec=spec, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   x_val=x_val, y_val=y_val, labeled_indices=labeled_indices,
                   preprocessor=preprocessor)


def choose_labeled(y_train: np.ndarray, num_labeled: int, num_classes: int, balanced: bool,
                   rng: np.random.RandomState) -> np.ndarray:
    """Sorted int64 indices of the labeled examples (``num_labeled / num_classes`` per class if balanced)."""
    num_train = len(y_train)
    if num_labeled > num_train:
        raise ConfigError(f"--num_labeled={num_labeled} is larger than the training set "
                          f"({num_train} examples after the validation split)")
    if not balanced:
        return np.sort(rng.choice(num_train, num_labeled, replace=False)).astype(np.int64)
    if num_labeled % num_classes:
        raise ConfigError(f"--num_labeled={num_labeled} must be a multiple of the {num_classes} classes "
                          f"for a balanced split (or pass --nobalanced)")
    per_class = num_labeled // num_classes
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(y_train == c)
        if len(members) < per_class:
            raise ConfigError(f"--num_labeled={num_labeled} needs {per_class} examples of each class, "
                              f"but class {c} has only {len(members)} in the training set")
        chosen.append(rng.choice(members, per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


# ---------------------------------------------------------------------------
# Loaders: each returns (spec, x_train, y_train, x_test, y_test), raw.

def _load_synthetic(config):
    from sklearn import datasets as sk_datasets

    def make(n, random_state):
        if config.dataset == "two_circles":
            x, y = sk_datasets.make_circles(n_samples=n, noise=config.noise, factor=0.8,
                                            random_state=random_state)
        else:
            x, y = sk_datasets.make_moons(n_samples=n, noise=config.noise, random_state=random_state)
        return x.astype(np.float32), y.astype(np.int64)

    x_train, y_train = make(config.num_train_synthetic, config.split_seed)
    x_test, y_test = make(config.num_test_synthetic, config.split_seed + 10_000)
    return _vector_spec(config.dataset, (2,), 2), x_train, y_train, x_test, y_test


def load_digits_arrays():
    """(x_train, y_train, x_test, y_test) of the ``digits`` set: uint8 (N, 8, 8, 1) images
    (sklearn's 0..16 values times 255/16, rounded) and int64 labels, split as DIGITS_* say."""
    from sklearn import datasets as sk_datasets
    digits = sk_datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    rng = np.random.RandomState(DIGITS_SPLIT_SEED)
    test = np.zeros(len(labels), bool)
    classes = np.unique(labels)
    for c in classes:  # stratified: each class gives its share of the test set
        members = np.flatnonzero(labels == c)
        share = int(round(DIGITS_TEST_SIZE * len(members) / len(labels)))
        test[rng.choice(members, share, replace=False)] = True
    extra = DIGITS_TEST_SIZE - int(test.sum())  # rounding: take or give back a few at random
    if extra > 0:
        test[rng.choice(np.flatnonzero(~test), extra, replace=False)] = True
    elif extra < 0:
        test[rng.choice(np.flatnonzero(test), -extra, replace=False)] = False
    return images[~test], labels[~test], images[test], labels[test]


def _load_digits(config):
    x_train, y_train, x_test, y_test = load_digits_arrays()
    return _image_spec(DIGITS, x_train.shape[1:], 10), x_train, y_train, x_test, y_test


def _check_image_classification(builder, name: str):
    """(image_key, label_key) of a tfds builder, or ConfigError if it is not image classification."""
    import tensorflow_datasets as tfds
    features = builder.info.features
    keys = builder.info.supervised_keys
    ok = (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)
          and keys[0] in features and keys[1] in features
          and isinstance(features[keys[0]], tfds.features.Image)
          and isinstance(features[keys[1]], tfds.features.ClassLabel))
    if not ok:
        raise ConfigError(f"--dataset={name!r} is not an image-classification dataset "
                          f"(supervised keys {keys}); allowed: {_ALLOWED_DATASETS_TEXT}")
    shape = features[keys[0]].shape
    if any(n is None for n in shape):
        raise ConfigError(f"--dataset={name!r} has variable-size images {shape}; resize them and use "
                          f"{NPZ_PREFIX}PATH or {FOLDER_PREFIX}PATH")
    return keys


def _load_tfds(config):
    import tensorflow_datasets as tfds
    name = config.dataset
    builder = tfds.builder(name, data_dir=config.data_dir)
    image_key, label_key = _check_image_classification(builder, name)
    if not builder.is_prepared():
        if not config.tfds_manual_dir:
            raise ConfigError(
                f"--dataset={name}: the data is not prepared under --data_dir={builder.data_dir_root}; "
                f"this machine has no internet, so pass --tfds_manual_dir=DIR holding the original "
                f"archives (e.g. ../shared/datasets/{_tfds_base_name(name)}), which tensorflow-datasets "
                f"prepares offline")
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=config.tfds_manual_dir))
        except Exception as e:
            raise ConfigError(f"--dataset={name}: preparing from --tfds_manual_dir={config.tfds_manual_dir} "
                              f"failed (does it hold the original archives?): {type(e).__name__}: {e}") from e
    splits = builder.info.splits
    if splits and not {"train", "test"} <= set(splits):
        raise ConfigError(f"--dataset={name} needs 'train' and 'test' splits, has {sorted(splits)}")

    cache_dir = os.path.join(config.data_dir or _default_tfds_dir(), ARRAY_CACHE_DIR,
                             name.replace("/", "_").replace(":", "_"))
    arrays = {split: _tfds_split_arrays(builder, split, cache_dir) for split in ("train", "test")}

    (x_train, y_train), (x_test, y_test) = arrays["train"], arrays["test"]
    spec = _image_spec(name, x_train.shape[1:], builder.info.features[label_key].num_classes)
    return spec, x_train, y_train, x_test, y_test


class NpyRows:
    """Rows of an ``.npy`` file, read from disk on access with ``os.pread`` (nothing is
    mapped or cached by this process: its memory holds only what a call returns).

    Array-like enough for the package: ``len``, ``shape``, ``dtype``, ``ndim``,
    ``nbytes``, indexing by an integer, a slice, an index array or a tuple whose
    first element selects rows (each returns an ndarray), ``np.asarray`` (reads the
    whole file: only for small sets).  ``row_shape`` reinterprets each row (e.g.
    ``(28, 28, 1)`` for a file of ``(N, 28, 28)`` images).
    """

    def __init__(self, path: str, row_shape: Optional[tuple] = None):
        self.path = path
        header = np.load(path, mmap_mode="r", allow_pickle=False)  # header only; no page is read
        shape, dtype, self.offset = header.shape, header.dtype, int(header.offset)
        fortran_order = header.ndim > 1 and header.flags.f_contiguous and not header.flags.c_contiguous
        del header
        if fortran_order or not shape:
            raise ValueError(f"{path}: expected a C-ordered array of rows, got shape {shape}")
        self.dtype = np.dtype(dtype)
        self.num_rows = int(shape[0])
        file_row_shape = tuple(int(n) for n in shape[1:])
        self.row_shape = file_row_shape if row_shape is None else tuple(int(n) for n in row_shape)
        if int(np.prod(self.row_shape)) != int(np.prod(file_row_shape)):
            raise ValueError(f"{path}: rows of shape {file_row_shape} cannot be read as {self.row_shape}")
        self.row_bytes = int(np.prod(file_row_shape)) * self.dtype.itemsize
        # Opened once here: tf.data calls the readers from several threads, and pread
        # (which takes the offset per call) is safe to share.
        self._fd = os.open(self.path, os.O_RDONLY)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_fd"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._fd = os.open(self.path, os.O_RDONLY)

    _close = staticmethod(os.close)  # bound now: at interpreter exit the module global may be gone

    def __del__(self):
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            try:
                self._close(fd)
            except OSError:
                pass

    def __len__(self):
        return self.num_rows

    @property
    def shape(self):
        return (self.num_rows,) + self.row_shape

    @property
    def ndim(self):
        return 1 + len(self.row_shape)

    @property
    def nbytes(self):
        return self.num_rows * self.row_bytes

    def _read_range(self, start: int, stop: int) -> np.ndarray:
        count = max(0, stop - start)
        data = os.pread(self._fd, count * self.row_bytes, self.offset + start * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape((count,) + self.row_shape).copy()

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows),) + self.row_shape, self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8).reshape(len(rows), self.row_bytes)
        fd = self._fd
        for i, row in enumerate(rows):
            flat[i] = np.frombuffer(os.pread(fd, self.row_bytes, self.offset + int(row) * self.row_bytes), np.uint8)
        return out

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if isinstance(first, slice):
            start, stop, step = first.indices(self.num_rows)
            out = (self._read_range(start, stop) if step == 1
                   else self._read_rows(np.arange(start, stop, step)))
        elif np.ndim(first) == 0:
            row = int(first)
            row = row + self.num_rows if row < 0 else row
            if not 0 <= row < self.num_rows:
                raise IndexError(f"row {first} out of range for {self.num_rows} rows")
            return self._read_range(row, row + 1)[0][rest]
        else:
            rows = np.asarray(first)
            rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64)
            rows = np.where(rows < 0, rows + self.num_rows, rows)
            if len(rows) and (rows.min() < 0 or rows.max() >= self.num_rows):
                raise IndexError(f"rows out of range for {self.num_rows} rows")
            out = self._read_rows(rows)
        return out[(slice(None),) + rest]

    def __array__(self, dtype=None, copy=None):
        out = self._read_range(0, self.num_rows)
        return out if dtype is None else out.astype(dtype)


def _default_tfds_dir() -> str:
    import tensorflow_datasets as tfds
    return os.path.expanduser(getattr(tfds.core.constants, "DATA_DIR", "~/tensorflow_datasets"))


def _tfds_split_arrays(builder, split: str, cache_dir: str, batch_size: int = 4096):
    """(x, y) of a tfds split: x uint8 rows of an ``.npy`` file read on access (NpyRows), y int64 in memory.

    The file is written once, batch by batch (memory stays at one batch), to
    ``cache_dir/<split>-<num_examples>-<fingerprint>_x.npy``; the fingerprint
    hashes the first batch, so a different dataset under the same name (a new
    version, mocked data) never reads a stale file.  Written under a
    temporary name and renamed, so an interrupted write leaves no partial file.
    """
    import hashlib
    import tensorflow_datasets as tfds
    ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False).batch(batch_size)
    try:
        num_examples = int(builder.info.splits[split].num_examples)
    except KeyError:  # no split metadata (e.g. mocked data): count
        num_examples = sum(len(y) for _, y in tfds.as_numpy(ds))
    batches = iter(tfds.as_numpy(ds))
    first_x, first_y = next(batches)
    digest = hashlib.sha1(np.ascontiguousarray(first_x).tobytes()
                          + np.asarray(first_y, np.int64).tobytes()).hexdigest()[:16]
    stem = os.path.join(cache_dir, f"{split}-{num_examples}-{digest}")
    x_path, y_path = stem + "_x.npy", stem + "_y.npy"
    if not (os.path.exists(x_path) and os.path.exists(y_path)):
        os.makedirs(cache_dir, exist_ok=True)
        suffix = f".tmp{os.getpid()}"
        x_out = np.lib.format.open_memmap(x_path + suffix, mode="w+", dtype=np.uint8,
                                          shape=(num_examples,) + tuple(first_x.shape[1:]))
        y_out = np.zeros((num_examples,), np.int64)
        count = 0
        for x, y in itertools.chain([(first_x, first_y)], batches):
            x_out[count:count + len(x)] = x
            y_out[count:count + len(y)] = y
            count += len(x)
        if count != num_examples:
            raise ConfigError(f"--dataset={builder.name}: split {split!r} has {count} examples, its "
                              f"metadata says {num_examples}")
        x_out.flush()
        del x_out
        with open(y_path + suffix, "wb") as f:
            np.save(f, y_out)
        os.replace(x_path + suffix, x_path)
        os.replace(y_path + suffix, y_path)
    return NpyRows(x_path), np.load(y_path).astype(np.int64)


def _load_npz(config):
    name = config.dataset
    path = name[len(NPZ_PREFIX):]
    if os.path.isdir(path):  # one .npy per array; the inputs stay on disk (NpyRows)
        missing = [k for k in NPZ_KEYS if not os.path.isfile(os.path.join(path, k + ".npy"))]
        if missing:
            raise ConfigError(f"--dataset={name}: missing files {[k + '.npy' for k in missing]}; the "
                              f"directory must hold {', '.join(k + '.npy' for k in NPZ_KEYS)}")
        arrays = {k: (NpyRows if k.startswith("x") else np.load)(os.path.join(path, k + ".npy"))
                  for k in NPZ_KEYS}
        x_train, y_train, x_test, y_test = (arrays[k] for k in NPZ_KEYS)
        classes_file = os.path.join(path, "num_classes.npy")
        num_classes = int(np.load(classes_file)) if os.path.isfile(classes_file) else None
    else:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f]
            if missing:
                raise ConfigError(f"--dataset={name}: missing arrays {missing}; the file must hold "
                                  f"{', '.join(NPZ_KEYS)} (and optionally num_classes)")
            x_train, y_train, x_test, y_test = (f[k] for k in NPZ_KEYS)
            num_classes = int(f["num_classes"]) if "num_classes" in f else None

    def as_raw(x, key):
        if x.dtype == np.uint8 and x.ndim in (3, 4):
            if x.ndim == 4:
                return x
            return NpyRows(x.path, x.row_shape + (1,)) if isinstance(x, NpyRows) else x[..., None]
        if isinstance(x, NpyRows) and x.dtype != np.float32:
            x = np.asarray(x)  # float64 feature vectors: converted in memory
        if np.issubdtype(x.dtype, np.floating) and x.ndim == 2:
            return x if x.dtype == np.float32 else x.astype(np.float32)
        raise ConfigError(f"--dataset={name}: {key} must be uint8 images (N, H, W[, C]) or float "
                          f"feature vectors (N, D); got dtype {x.dtype}, shape {x.shape}")

    x_train, x_test = as_raw(x_train, "x_train"), as_raw(x_test, "x_test")
    if x_train.shape[1:] != x_test.shape[1:] or x_train.dtype != x_test.dtype:
        raise ConfigError(f"--dataset={name}: x_train {x_train.dtype}{x_train.shape} and x_test "
                          f"{x_test.dtype}{x_test.shape} do not match")
    for key, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise ConfigError(f"--dataset={name}: y_{key} must be integer labels of shape ({len(x)},), "
                              f"got dtype {y.dtype}, shape {y.shape}")
    if num_classes is None:
        num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    make_spec = _image_spec if x_train.dtype == np.uint8 else _vector_spec
    return make_spec(name, x_train.shape[1:], num_classes), x_train, y_train, x_test, y_test


def _class_folders(path: str) -> list:
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))


def _first_image(root: str, classes: list) -> Optional[str]:
    for c in classes:
        for fname in sorted(os.listdir(os.path.join(root, c))):
            if fname.lower().endswith(FOLDER_IMAGE_EXTENSIONS):
                return os.path.join(root, c, fname)
    return None


def _read_image_folder(root: str, classes: list, image_size: tuple, color_mode: str):
    ds = keras.utils.image_dataset_from_directory(
        root, labels="inferred", label_mode="int", class_names=classes, color_mode=color_mode,
        batch_size=256, image_size=image_size, shuffle=False, verbose=False)
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(np.clip(np.round(x), 0, 255).astype(np.uint8))
        ys.append(y.astype(np.int64))
    channels = 1 if color_mode == "grayscale" else 3
    if not xs:
        return np.zeros((0,) + tuple(image_size) + (channels,), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate(xs), np.concatenate(ys)


def _load_folder(config):
    from PIL import Image
    name = config.dataset
    path = name[len(FOLDER_PREFIX):]
    split_dirs = os.path.isdir(os.path.join(path, "train")) and os.path.isdir(os.path.join(path, "test"))
    train_root = os.path.join(path, "train") if split_dirs else path
    classes = _class_folders(train_root)
    if len(classes) < 2:
        raise ConfigError(f"--dataset={name}: expected one sub-folder per class (at least 2) in "
                          f"{train_root!r}, found {classes}")
    if split_dirs and _class_folders(os.path.join(path, "test")) != classes:
        raise ConfigError(f"--dataset={name}: test/ must have the same class sub-folders as train/ "
                          f"({classes}), has {_class_folders(os.path.join(path, 'test'))}")
    first = _first_image(train_root, classes)
    if first is None:
        raise ConfigError(f"--dataset={name}: no images ({', '.join(FOLDER_IMAGE_EXTENSIONS)}) found")
    with Image.open(first) as image:
        width, height = image.size
        color_mode = "grayscale" if image.mode in ("1", "L", "I", "I;16", "F") else "rgb"

    x, y = _read_image_folder(train_root, classes, (height, width), color_mode)
    if split_dirs:
        x_test, y_test = _read_image_folder(os.path.join(path, "test"), classes, (height, width), color_mode)
        x_train, y_train = x, y
    else:
        rng = np.random.RandomState(config.split_seed)
        test_idx = []
        for c in range(len(classes)):
            members = np.flatnonzero(y == c)
            num_test = max(1, int(round(FOLDER_TEST_FRACTION * len(members)))) if len(members) >= 2 else 0
            test_idx.append(rng.choice(members, num_test, replace=False))
        test_mask = np.zeros(len(y), bool)
        test_mask[np.concatenate(test_idx).astype(np.int64)] = True
        x_train, y_train, x_test, y_test = x[~test_mask], y[~test_mask], x[test_mask], y[test_mask]
    if not len(x_test):
        raise ConfigError(f"--dataset={name}: the test set is empty (too few images per class)")
    return _image_spec(name, x_train.shape[1:], len(classes)), x_train, y_train, x_test, y_test


# ---------------------------------------------------------------------------
# Input pipelines.

def _index_stream(num_items: int, batch_size: int, seed: int, stream_offset: int,
                  start_step: int) -> tf.data.Dataset:
    """Infinite batches of positions in ``[0, num_items)``, a function of (seed, step) only.

    Epoch ``e`` is ``stateless_shuffle(range(num_items), seed=[seed, stream_offset + e])``;
    example counter ``k = step * batch_size + j`` is ``perm_{k // N}[k % N]``.
    Batches run across epoch boundaries (so a batch can repeat an example when
    ``num_items < batch_size``).  The stream from ``start_step`` on is exactly
    the tail of the stream from step 0.

    Each batch is one vectorised gather (no per-example tf.data work): a
    ``scan`` over the steps keeps the permutation of the epoch the last batch
    ended in, so a shuffle of ``num_items`` positions is computed only when a
    batch reaches an epoch not yet seen; a batch spanning epochs ``e0 .. e1``
    gathers ``k - e0 * N`` from their concatenated permutations.
    """
    if num_items < 1 or batch_size < 1:
        raise ValueError(f"_index_stream needs num_items >= 1 and batch_size >= 1, "
                         f"got {num_items} and {batch_size}")
    n = tf.constant(num_items, tf.int64)
    b = tf.constant(batch_size, tf.int64)
    seed_t = tf.constant(seed, tf.int64)
    offsets = tf.range(batch_size, dtype=tf.int64)

    def shuffle(epoch):
        return tf.random.experimental.stateless_shuffle(
            tf.range(num_items, dtype=tf.int64), seed=tf.stack([seed_t, stream_offset + epoch]))

    def step_fn(state, step):
        cached_epoch, cached_perm = state
        first = step * b
        e0 = first // n
        e1 = (first + b - 1) // n

        def permutation(epoch):
            return tf.cond(tf.equal(epoch, cached_epoch), lambda: cached_perm, lambda: shuffle(epoch))

        def in_cached_epoch():
            return tf.gather(cached_perm, first - e0 * n + offsets), cached_perm

        def across_epochs():
            perms = tf.map_fn(permutation, tf.range(e0, e1 + 1),
                              fn_output_signature=tf.TensorSpec([num_items], tf.int64))
            positions = tf.gather(tf.reshape(perms, [-1]), first - e0 * n + offsets)
            return positions, perms[-1]

        fits = tf.logical_and(tf.equal(e0, cached_epoch), tf.equal(e1, cached_epoch))
        positions, last_perm = tf.cond(fits, in_cached_epoch, across_epochs)
        positions = tf.ensure_shape(positions, [batch_size])
        last_perm = tf.ensure_shape(last_perm, [num_items])
        return (e1, last_perm), positions

    no_epoch = (tf.constant(-1, tf.int64), tf.zeros([num_items], tf.int64))
    steps = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
    return steps.scan(no_epoch, step_fn)


def row_reader(x):
    """A function ``idx -> x[idx]`` on int64 index tensors, for use inside tf.data.

    Small in-memory arrays become a graph constant and ``tf.gather``; memory
    maps, :class:`Rows` and large arrays are read through ``tf.numpy_function``
    (only the requested rows leave the disk).
    """
    row_shape = tuple(int(n) for n in x.shape[1:])
    dtype = tf.as_dtype(x.dtype)
    if not is_streamed(x) and x.nbytes <= IN_GRAPH_BYTES:
        table = tf.constant(x)
        return lambda idx: tf.gather(table, idx)

    def read(idx):
        return np.ascontiguousarray(x[np.asarray(idx, np.int64)], dtype=x.dtype)

    def gather(idx):
        rows = tf.numpy_function(read, [idx], dtype, stateful=False)
        rows.set_shape(tf.TensorShape([idx.shape[0]]).concatenate(row_shape))
        return rows

    return gather


def _deterministic(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options)


def train_dataset(data: SSLData, batch_size: int, unlabeled_batch_size: int, seed: int,
                  start_step: int = 0, num_replicas: int = 1, first_replica: int = 0,
                  num_local_replicas: Optional[int] = None) -> tf.data.Dataset:
    """Infinite stream of ``((x_l, y_l), (x_u, idx_u))`` training batches.

    ``x_l``: ``(batch_size,) + input_shape`` float32 (preprocessed), ``y_l``:
    ``(batch_size,)`` int64; ``x_u``: ``(unlabeled_batch_size,) + input_shape``
    float32, ``idx_u``: int64 indices of those examples in ``data.x_train``.
    The labeled stream cycles through ``data.labeled_indices``, the unlabeled
    stream through all of ``x_train``, each in its own per-epoch permutation
    derived from ``seed`` (see :func:`_index_stream`).  The batches from
    ``start_step`` on are exactly those an uninterrupted stream yields from
    that step.

    Distribution: with ``num_replicas > 1`` each global batch (the sizes above)
    is cut into ``num_replicas`` equal consecutive slices, and the stream yields,
    for every step, the slices of replicas ``first_replica`` ..
    ``first_replica + num_local_replicas - 1`` (default: all) one after the
    other.  Only those rows are read and preprocessed.
    """
    read_rows = row_reader(data.x_train)
    y_all = tf.constant(data.y_train.astype(np.int64))
    labeled = tf.constant(np.asarray(data.labeled_indices, np.int64))
    preprocess = data.preprocessor

    def labeled_batch(positions):
        idx = tf.gather(labeled, positions)
        return preprocess(read_rows(idx)), tf.gather(y_all, idx)

    def unlabeled_batch(idx):
        return preprocess(read_rows(idx)), idx

    positions = tf.data.Dataset.zip((
        _index_stream(data.num_labeled, batch_size, seed, LABELED_STREAM_OFFSET, start_step),
        _index_stream(data.num_unlabeled, unlabeled_batch_size, seed, UNLABELED_STREAM_OFFSET, start_step)))
    if num_replicas > 1:
        count = num_replicas - first_replica if num_local_replicas is None else num_local_replicas
        if batch_size % num_replicas or unlabeled_batch_size % num_replicas:
            raise ConfigError(f"batch sizes {batch_size} and {unlabeled_batch_size} do not divide by "
                              f"{num_replicas} replicas")

        def local_slices(labeled_positions, unlabeled_idx):
            labeled_positions = tf.reshape(labeled_positions, [num_replicas, -1])
            unlabeled_idx = tf.reshape(unlabeled_idx, [num_replicas, -1])
            local = slice(first_replica, first_replica + count)
            return tf.data.Dataset.from_tensor_slices((labeled_positions[local], unlabeled_idx[local]))

        positions = positions.flat_map(local_slices)
    ds = positions.map(lambda p, q: (labeled_batch(p), unlabeled_batch(q)),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return _deterministic(ds)


EVAL_SPLITS = ("test", "val", "validation", "train")


def eval_dataset(data: SSLData, split: str = "test", batch_size: int = 500) -> tf.data.Dataset:
    """``(x, y)`` batches of a split in order, last batch possibly smaller.

    ``split``: "test", "val" (alias "validation") or "train".  ``x`` is
    preprocessed float32 ``(b,) + input_shape``, ``y`` int64 ``(b,)``.
    """
    if split == "test":
        x, y = data.x_test, data.y_test
    elif split in ("val", "validation"):
        if data.x_val is None:
            raise ConfigError("no validation split: pass --validation_size > 0")
        x, y = data.x_val, data.y_val
    elif split == "train":
        x, y = data.x_train, data.y_train
    else:
        raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    return _row_batches(data.preprocessor, x, tf.data.Dataset.range(len(x)), batch_size, y)


def input_batches(data: SSLData, indices, batch_size: int) -> tf.data.Dataset:
    """Preprocessed training inputs ``x_train[indices]``, in that order, in batches of
    ``batch_size`` (the last possibly smaller); no labels, no augmentation."""
    indices = tf.data.Dataset.from_tensor_slices(np.asarray(indices, np.int64))
    return _row_batches(data.preprocessor, data.x_train, indices, batch_size)


def _row_batches(preprocess, x, indices: tf.data.Dataset, batch_size: int, y=None) -> tf.data.Dataset:
    """``preprocess(x[idx])`` (and ``y[idx]`` if given) for batches of the int64 ``indices``."""
    read_rows = row_reader(x)
    if y is None:
        read = lambda idx: preprocess(read_rows(idx))
    else:
        labels = tf.constant(np.asarray(y, np.int64))
        read = lambda idx: (preprocess(read_rows(idx)), tf.gather(labels, idx))
    ds = indices.batch(batch_size).map(read, num_parallel_calls=tf.data.AUTOTUNE)
    return _deterministic(ds.prefetch(tf.data.AUTOTUNE))


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
