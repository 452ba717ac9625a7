"""The semi-supervised split of a data set: validation hold-out, labeled subset, preprocessor
(``load``), and the cheap checks of the config before any work (``validate``)."""
from __future__ import annotations

import dataclasses
import os
from typing import Optional
import numpy as np

from tf_advssl.config import ConfigError
from tf_advssl.data.arrays import check_finite, select_rows
from tf_advssl.data.preprocessing import Preprocessor
from tf_advssl.data.sources import (check_image_classification, load_digits, load_folder, load_npz,
                                    load_synthetic, load_tfds)
from tf_advssl.data.spec import (DataSpec, FOLDER_PREFIX, NPZ_KEYS, NPZ_PREFIX, STANDARD_TFDS_DATASETS,
                                 ALLOWED_DATASETS_TEXT, dataset_kind, tfds_base_name)


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


def validate(config) -> None:
    """Cheap checks of the data flags; raises ConfigError naming the flag.

    Works on an unresolved config (``None`` fields are skipped).  Does not load
    or download anything; for tfds names other than the standard ones it builds
    the (metadata-only) builder to check that it is an image-classification set.
    """
    name = config.dataset
    kind = dataset_kind(name)
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
        if tfds_base_name(name) not in tfds.list_builders(with_community_datasets=False):
            raise ConfigError(f"--dataset={name!r} is not a known dataset; allowed: {ALLOWED_DATASETS_TEXT}")
        try:
            builder = tfds.builder(name, data_dir=config.data_dir)
        except Exception as e:  # bad config/version suffix, missing optional dependency...
            raise ConfigError(f"--dataset={name!r}: tensorflow-datasets cannot build it: {e}") from e
        check_image_classification(builder, name)

    if config.noise is not None and config.noise < 0:
        raise ConfigError(f"--noise must be >= 0, got {config.noise}")
    if not 0.0 < config.circles_factor < 1.0:
        raise ConfigError(f"--circles_factor must be in (0, 1) (inner / outer radius), got {config.circles_factor}")
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
    kind = dataset_kind(config.dataset)
    loader = {"synthetic": load_synthetic, "digits": load_digits, "tfds": load_tfds,
              "npz": load_npz, "folder": load_folder}[kind]
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
