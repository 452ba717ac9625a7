"""What describes a data set: its name kinds, the DataSpec of its raw inputs, and InputInfo
(what ``describe`` reads of an input before loading it)."""
from __future__ import annotations

import dataclasses
from typing import Optional



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


ALLOWED_DATASETS_TEXT = (
    f"{', '.join(SYNTHETIC_DATASETS + (DIGITS,) + STANDARD_TFDS_DATASETS)}, any other tensorflow-datasets "
    f"image-classification builder, {NPZ_PREFIX}PATH or {FOLDER_PREFIX}PATH")


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


def image_spec(name: str, input_shape, num_classes: int) -> DataSpec:
    return DataSpec(name=name, input_shape=tuple(int(n) for n in input_shape),
                    num_classes=int(num_classes), raw_dtype="uint8", pixel_range=(0, 255),
                    is_image=True)


def vector_spec(name: str, input_shape, num_classes: int) -> DataSpec:
    return DataSpec(name=name, input_shape=tuple(int(n) for n in input_shape),
                    num_classes=int(num_classes), raw_dtype="float32", pixel_range=None,
                    is_image=False)


def dataset_kind(name: str) -> str:
    if name in SYNTHETIC_DATASETS:
        return "synthetic"
    if name == DIGITS:
        return "digits"
    if name.startswith(NPZ_PREFIX):
        return "npz"
    if name.startswith(FOLDER_PREFIX):
        return "folder"
    return "tfds"


def tfds_base_name(name: str) -> str:
    """"cifar10:3.0.2" or "name/config:1.0.0" -> the registered builder name."""
    return name.split(":")[0].split("/")[0]


@dataclasses.dataclass(frozen=True)
class InputInfo:
    """What the defaults of a run depend on, known before the data are read:
    whether the inputs are images, their per-example shape (None where only reading
    the data would tell) and the size of the training set (None if unknown)."""
    is_image: bool
    input_shape: Optional[tuple] = None
    num_train: Optional[int] = None
