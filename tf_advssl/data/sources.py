"""Where the raw arrays come from: the synthetic sets, sklearn's digits, tensorflow-datasets,
``npz:`` files and directories, and ``folder:`` image trees; ``describe`` reads their shapes only."""
from __future__ import annotations

import itertools
import os
from typing import Optional
import keras
import numpy as np

from tf_advssl.config import ConfigError
from tf_advssl.data.arrays import ARRAY_CACHE_DIR, NpyRows, npy_header
from tf_advssl.data.spec import (DIGITS, DIGITS_SPLIT_SEED, DIGITS_TEST_SIZE, FOLDER_IMAGE_EXTENSIONS,
                                 FOLDER_PREFIX, FOLDER_TEST_FRACTION, InputInfo, NPZ_KEYS, NPZ_PREFIX,
                                 STANDARD_TFDS_DATASETS, ALLOWED_DATASETS_TEXT, dataset_kind, image_spec,
                                 tfds_base_name, vector_spec)


def describe(config) -> InputInfo:
    """The :class:`InputInfo` of ``config.dataset``, from metadata and array headers only
    (nothing is loaded or prepared); ``validate`` must have passed."""
    import zipfile
    name = config.dataset
    kind = dataset_kind(name)
    if kind == "synthetic":
        return InputInfo(False, (2,), config.num_train_synthetic)
    if kind == "npz":
        path = name[len(NPZ_PREFIX):]
        if os.path.isdir(path):
            x_path = os.path.join(path, "x_train.npy")
            if not os.path.isfile(x_path):
                return InputInfo(False)  # load() names the missing file
            with open(x_path, "rb") as f:
                shape, dtype = npy_header(f)
        else:
            try:
                with zipfile.ZipFile(path) as archive, archive.open("x_train.npy") as f:
                    shape, dtype = npy_header(f)
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


def load_synthetic(config):
    from sklearn import datasets as sk_datasets

    def make(n, random_state):
        if config.dataset == "two_circles":
            x, y = sk_datasets.make_circles(n_samples=n, noise=config.noise, factor=config.circles_factor,
                                            random_state=random_state)
        else:
            x, y = sk_datasets.make_moons(n_samples=n, noise=config.noise, random_state=random_state)
        return x.astype(np.float32), y.astype(np.int64)

    x_train, y_train = make(config.num_train_synthetic, config.split_seed)
    x_test, y_test = make(config.num_test_synthetic, config.split_seed + 10_000)
    return vector_spec(config.dataset, (2,), 2), x_train, y_train, x_test, y_test


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


def load_digits(config):
    x_train, y_train, x_test, y_test = load_digits_arrays()
    return image_spec(DIGITS, x_train.shape[1:], 10), x_train, y_train, x_test, y_test


def check_image_classification(builder, name: str):
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
                          f"(supervised keys {keys}); allowed: {ALLOWED_DATASETS_TEXT}")
    shape = features[keys[0]].shape
    if any(n is None for n in shape):
        raise ConfigError(f"--dataset={name!r} has variable-size images {shape}; resize them and use "
                          f"{NPZ_PREFIX}PATH or {FOLDER_PREFIX}PATH")
    return keys


def load_tfds(config):
    import tensorflow_datasets as tfds
    name = config.dataset
    builder = tfds.builder(name, data_dir=config.data_dir)
    image_key, label_key = check_image_classification(builder, name)
    if not builder.is_prepared():
        if not config.tfds_manual_dir:
            raise ConfigError(
                f"--dataset={name}: the data is not prepared under --data_dir={builder.data_dir_root}; "
                f"this machine has no internet, so pass --tfds_manual_dir=DIR holding the original "
                f"archives (e.g. ../shared/datasets/{tfds_base_name(name)}), which tensorflow-datasets "
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
    spec = image_spec(name, x_train.shape[1:], builder.info.features[label_key].num_classes)
    return spec, x_train, y_train, x_test, y_test


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


def load_npz(config):
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
    make_spec = image_spec if x_train.dtype == np.uint8 else vector_spec
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


def load_folder(config):
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
    return image_spec(name, x_train.shape[1:], len(classes)), x_train, y_train, x_test, y_test
