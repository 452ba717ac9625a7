"""Defaults that follow the data: the built-in digits set, what is known before loading,
and the settings that scale with the size of the data."""
import numpy as np
import pytest

from tf_advssl import data as data_lib
from tf_advssl import training
from tf_advssl.config import TRANSLATE_FRACTION, Config
from tf_advssl.methods import resolve


def test_digits_is_a_fixed_stratified_split_of_sklearn_digits():
    from sklearn.datasets import load_digits
    x_train, y_train, x_test, y_test = data_lib.load_digits_arrays()
    assert x_train.shape == (1397, 8, 8, 1) and x_test.shape == (400, 8, 8, 1)
    assert x_train.dtype == np.uint8 and x_train.max() == 255 and x_train.min() == 0
    assert np.all(np.abs(np.bincount(y_test, minlength=10) - 40) <= 1)  # stratified
    again = data_lib.load_digits_arrays()
    for a, b in zip((x_train, y_train, x_test, y_test), again):
        np.testing.assert_array_equal(a, b)
    digits = load_digits()  # every image once, in one of the two splits, values 0..16 -> 0..255
    images = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)
    assert sorted(map(bytes, np.concatenate([x_train, x_test])[..., 0])) == sorted(map(bytes, images))


def test_digits_split_does_not_depend_on_split_seed_but_the_labeled_subset_does():
    first = data_lib.load(resolve(Config(dataset="digits", split_seed=1)))
    second = data_lib.load(resolve(Config(dataset="digits", split_seed=2)))
    np.testing.assert_array_equal(first.x_test, second.x_test)
    assert len(first.labeled_indices) == 50
    assert np.all(np.bincount(first.y_train[first.labeled_indices], minlength=10) == 5)
    assert not np.array_equal(first.labeled_indices, second.labeled_indices)
    assert first.spec.input_shape == (8, 8, 1) and first.spec.num_classes == 10 and first.spec.is_image


def test_describe_reads_only_headers(tmp_path):
    np.savez(tmp_path / "images.npz", x_train=np.zeros((30, 12, 10), np.uint8), y_train=np.zeros(30, int),
             x_test=np.zeros((5, 12, 10), np.uint8), y_test=np.zeros(5, int))
    info = data_lib.describe(Config(dataset=f"npz:{tmp_path / 'images.npz'}"))
    assert info.is_image and info.input_shape == (12, 10, 1) and info.num_train == 30
    directory = tmp_path / "vectors"
    directory.mkdir()
    np.save(directory / "x_train.npy", np.zeros((40, 7), np.float32))
    info = data_lib.describe(Config(dataset=f"npz:{directory}"))
    assert not info.is_image and info.input_shape == (7,) and info.num_train == 40
    assert data_lib.describe(Config(dataset="mnist")) == data_lib.InputInfo(True, (28, 28, 1), 60000)


def test_batches_never_exceed_the_labeled_or_the_training_set():
    digits = data_lib.describe(Config(dataset="digits"))
    for method in ("fixmatch", "mixmatch"):  # 64 labeled examples per batch by default
        assert resolve(Config(method=method, dataset="digits"), digits).batch_size == 50
        assert resolve(Config(method=method, dataset="mnist"), None).batch_size == 64
    assert resolve(Config(method="fixmatch", dataset="digits", batch_size=64), digits).batch_size == 64  # asked
    circles = Config(dataset="two_circles", validation_size=300)
    resolved = resolve(circles, data_lib.describe(circles))
    assert resolved.unlabeled_batch_size == 1200 and resolved.batch_size == 8


@pytest.mark.parametrize("side, pixels", [(8, 1), (28, 2), (32, 2), (64, 5), (96, 7)])
def test_translation_of_unknown_images_follows_their_side(side, pixels):
    info = data_lib.InputInfo(True, (side, side, 3), 1000)
    assert resolve(Config(dataset="npz:/some/file.npz"), info).augment_translate == pixels
    assert round(28 * TRANSLATE_FRACTION) == 2
    assert resolve(Config(dataset="npz:/some/file.npz", augment_translate=0), info).augment_translate == 0


def test_validate_resolves_unknown_vectors_to_an_mlp_without_augmentation(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "v.npz", x_train=rng.normal(size=(50, 3)).astype(np.float32), y_train=np.arange(50) % 2,
             x_test=rng.normal(size=(10, 3)).astype(np.float32), y_test=np.arange(10) % 2)
    config = training.validate(Config(dataset=f"npz:{tmp_path / 'v.npz'}", num_labeled=10,
                                      workdir=str(tmp_path / "run")))
    assert config.network == "mlp" and config.augment_translate == 0 and config.batch_size == 10


def test_mixmatch_ramp_up_is_forty_percent_of_short_runs_and_the_papers_at_full_length():
    from tf_advssl.methods.mixmatch import MixMatchParams, rampup_steps
    params = MixMatchParams()
    assert rampup_steps(params, 3000) == 1200
    assert rampup_steps(params, 2 ** 20) == 16384
    assert rampup_steps(MixMatchParams(mixmatch_rampup=1 / 64), 3000) == 47


def test_mixing_methods_use_small_alpha_on_the_2d_sets_and_their_papers_alpha_elsewhere():
    """alpha = 0.1 on two_circles and moons (chosen on validation splits of both, docs/defaults.md);
    elsewhere ICT/AdvMixup's 1.0 and MixMatch's 0.75; a flag still wins."""
    from tf_advssl.hparams import make_params

    for dataset in ("two_circles", "moons"):
        assert make_params("ict", dataset, {}).mixup_alpha == 0.1
        assert make_params("advmixup", dataset, {}).mixup_alpha == 0.1
        assert make_params("mixmatch", dataset, {}).mixmatch_alpha == 0.1
        assert make_params("mixmatch", dataset, {"mixmatch_alpha": 0.5}).mixmatch_alpha == 0.5
    for dataset in ("mnist", "digits", "npz:/some/file.npz"):
        assert make_params("ict", dataset, {}).mixup_alpha == 1.0
        assert make_params("mixmatch", dataset, {}).mixmatch_alpha == 0.75
