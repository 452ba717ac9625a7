"""Tests of tf_advssl.data: splits, pipelines, preprocessing, loaders and input errors."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json

import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import data as data_lib
from tf_advssl.config import Config, ConfigError
from tf_advssl.methods import resolve


def make_config(**changes) -> Config:
    return resolve(Config(**changes))


def take(ds, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(n)]


def write_npz(path, x_train, y_train, x_test, y_test, **extra):
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, **extra)
    return f"npz:{path}"


def tiny_images(n, shape=(4, 4), num_classes=2, seed=0):
    rng = np.random.RandomState(seed)
    return (rng.randint(0, 256, size=(n,) + shape).astype(np.uint8),
            (np.arange(n) % num_classes).astype(np.int64))


# ---------------------------------------------------------------------------
# Splits.

def test_balanced_split_per_class_and_reproducible():
    config = make_config(dataset="two_circles", num_labeled=8, split_seed=3)
    data = data_lib.load(config)
    labels = data.y_train[data.labeled_indices]
    assert np.bincount(labels, minlength=2).tolist() == [4, 4]
    assert len(np.unique(data.labeled_indices)) == 8
    assert data.num_labeled == 8 and data.num_unlabeled == config.num_train_synthetic
    again = data_lib.load(config)
    np.testing.assert_array_equal(again.labeled_indices, data.labeled_indices)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    other = data_lib.load(config.replace(split_seed=4))
    # Another seed: another training set (synthetic) and other labeled points.
    assert not np.array_equal(other.x_train[other.labeled_indices], data.x_train[data.labeled_indices])


def test_balanced_split_depends_only_on_split_seed_for_fixed_data(tmp_path):
    x, y = tiny_images(60, num_classes=3)
    name = write_npz(tmp_path / "d.npz", x, y, x[:6], y[:6])
    config = make_config(dataset=name, num_labeled=9, split_seed=0)
    first = data_lib.load(config).labeled_indices
    np.testing.assert_array_equal(data_lib.load(config).labeled_indices, first)
    assert np.bincount(y[first], minlength=3).tolist() == [3, 3, 3]
    second = data_lib.load(config.replace(split_seed=1)).labeled_indices
    assert not np.array_equal(first, second)
    assert np.bincount(y[second], minlength=3).tolist() == [3, 3, 3]


def test_unbalanced_split_and_validation_split(tmp_path):
    x, y = tiny_images(50)
    x[:, 0, 0] = np.arange(50)  # make every image identifiable
    name = write_npz(tmp_path / "d.npz", x, y, x[:4], y[:4])
    config = make_config(dataset=name, num_labeled=7, balanced=False, validation_size=10)
    data = data_lib.load(config)
    assert len(data.x_train) == 40 and len(data.x_val) == 10 and len(data.y_val) == 10
    assert data.x_train.shape == (40, 4, 4, 1)
    train_ids, val_ids = set(data.x_train[:, 0, 0, 0]), set(data.x_val[:, 0, 0, 0])
    assert not train_ids & val_ids and len(train_ids | val_ids) == 50
    np.testing.assert_array_equal(data.y_val, data.x_val[:, 0, 0, 0] % 2)  # labels follow images
    assert data.num_labeled == 7 and len(np.unique(data.labeled_indices)) == 7
    assert data.labeled_indices.max() < 40
    np.testing.assert_array_equal(data_lib.load(config).x_val, data.x_val)


# ---------------------------------------------------------------------------
# Training stream.

def _synthetic(num_train=50, num_labeled=4):
    return data_lib.load(make_config(dataset="moons", num_train_synthetic=num_train,
                                     num_test_synthetic=20, num_labeled=num_labeled))


def test_train_dataset_resume_gives_same_batches():
    data = _synthetic()
    full = take(data_lib.train_dataset(data, 8, 16, seed=7), 12)
    resumed = take(data_lib.train_dataset(data, 8, 16, seed=7, start_step=5), 7)
    for a, b in zip(full[5:], resumed):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    other_seed = take(data_lib.train_dataset(data, 8, 16, seed=8), 1)[0]
    assert not np.array_equal(other_seed[1][1], full[0][1][1])


def test_every_example_once_per_epoch():
    data = _synthetic(num_train=50, num_labeled=4)
    batches = take(data_lib.train_dataset(data, 3, 16, seed=0), 25)  # 400 = 8 unlabeled epochs
    idx_u = np.concatenate([b[1][1] for b in batches])
    epochs = idx_u.reshape(8, 50)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(50))
    assert not np.array_equal(epochs[0], epochs[1])
    # Labeled stream (4 examples, batch 3, crossing epoch boundaries): each
    # epoch of 4 consecutive examples is a permutation of the labeled set.
    x_l = np.concatenate([b[0][0] for b in batches])[:72].reshape(18, 4, 2)
    labeled_x = data.x_train[data.labeled_indices]
    for epoch in x_l:
        order = [int(np.flatnonzero((labeled_x == row).all(axis=1))[0]) for row in epoch]
        assert sorted(order) == [0, 1, 2, 3]


def reference_index_batches(num_items, batch_size, seed, stream_offset, start_step, count):
    """The definition of index_stream, one example at a time: k -> perm_{k // N}[k % N]."""
    perms = {}

    def perm(epoch):
        if epoch not in perms:
            perms[epoch] = tf.random.experimental.stateless_shuffle(
                tf.range(num_items, dtype=tf.int64),
                seed=tf.constant([seed, stream_offset + epoch], tf.int64)).numpy()
        return perms[epoch]

    batches = []
    for step in range(start_step, start_step + count):
        ks = range(step * batch_size, (step + 1) * batch_size)
        batches.append(np.array([perm(k // num_items)[k % num_items] for k in ks], np.int64))
    return batches


@pytest.mark.parametrize("num_items, batch_size, start_step", [
    (10, 4, 0),    # batch < N, batches cross epoch boundaries
    (10, 5, 0),    # batch divides N: batches end exactly on epoch boundaries
    (7, 7, 0),     # batch == N (full batch)
    (3, 8, 0),     # batch > N: one batch spans three or four epochs
    (10, 4, 7),    # resume mid-epoch (k = 28)
    (3, 8, 5),     # resume with batch > N
    (7, 7, 3),     # resume full batch
])
def test_index_stream_matches_its_definition(num_items, batch_size, start_step):
    ds = data_lib.index_stream(num_items, batch_size, 11, 3, start_step)
    assert ds.element_spec == tf.TensorSpec([batch_size], tf.int64)
    got = [b.numpy() for b in ds.take(20)]
    want = reference_index_batches(num_items, batch_size, 11, 3, start_step, 20)
    for step, (g, w) in enumerate(zip(got, want), start_step):
        assert g.dtype == np.int64
        np.testing.assert_array_equal(g, w, err_msg=f"step {step}")


def test_index_stream_depends_on_seed_and_stream_offset():
    first = data_lib.index_stream(50, 50, 0, 1, 0).take(2)
    a, a2 = [b.numpy() for b in first]
    b = next(iter(data_lib.index_stream(50, 50, 1, 1, 0))).numpy()
    c = next(iter(data_lib.index_stream(50, 50, 0, 2, 0))).numpy()
    assert not np.array_equal(a, a2) and not np.array_equal(a, b) and not np.array_equal(a, c)
    np.testing.assert_array_equal(c, a2)  # offset 2, epoch 0 is offset 1, epoch 1


def test_stream_shapes_dtypes_and_repeats_when_few_labels():
    data = _synthetic(num_train=50, num_labeled=2)
    (x_l, y_l), (x_u, idx_u) = data_lib.train_dataset(data, 5, 16, seed=0).element_spec
    assert x_l.shape == (5, 2) and x_l.dtype == tf.float32 and y_l.dtype == tf.int64
    assert x_u.shape == (16, 2) and idx_u.shape == (16,) and idx_u.dtype == tf.int64
    (x_l, y_l), _ = take(data_lib.train_dataset(data, 5, 16, seed=0), 1)[0]
    assert len(np.unique(x_l, axis=0)) == 2  # 5 draws from 2 labeled examples


def test_indices_point_at_the_preprocessed_examples(tmp_path):
    x, y = tiny_images(40, shape=(4, 4, 3))
    name = write_npz(tmp_path / "d.npz", x, y, x[:4], y[:4])
    data = data_lib.load(make_config(dataset=name, num_labeled=6, zca=True))
    assert data.preprocessor.zca_matrix is not None
    expected_all = data.preprocessor(data.x_train).numpy()
    for (x_l, y_l), (x_u, idx_u) in take(data_lib.train_dataset(data, 4, 8, seed=1), 6):
        np.testing.assert_allclose(x_u, expected_all[idx_u], atol=1e-5)
        for row, label in zip(x_l, y_l):
            match = np.flatnonzero(np.abs(expected_all - row).max(axis=(1, 2, 3)) < 1e-5)
            assert set(match) & set(data.labeled_indices)
            assert label == data.y_train[match[0]]


def test_eval_dataset_in_order_with_partial_last_batch(tmp_path):
    x, y = tiny_images(30)
    name = write_npz(tmp_path / "d.npz", x, y, x[:23], y[:23])
    data = data_lib.load(make_config(dataset=name, num_labeled=4))
    batches = take(data_lib.eval_dataset(data, "test", batch_size=10), 10)
    assert [len(b[1]) for b in batches] == [10, 10, 3]
    np.testing.assert_allclose(np.concatenate([b[0] for b in batches]),
                               x[:23, :, :, None] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y[:23])
    with pytest.raises(ConfigError, match="--validation_size"):
        data_lib.eval_dataset(data, "val")


# ---------------------------------------------------------------------------
# Preprocessing.

def test_zca_whitening_gives_identity_covariance():
    rng = np.random.RandomState(0)
    mixing = rng.normal(size=(6, 6))
    x = rng.normal(size=(2000, 6)) @ mixing + 3.0
    mean, matrix = data_lib.zca_whitening(x, epsilon=1e-9)
    white = (x - mean) @ matrix
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(6), atol=1e-3)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-5)  # ZCA (not PCA) whitening


def test_preprocessor_fit_images_zca_whitens_training_set():
    rng = np.random.RandomState(1)
    base = rng.randint(0, 128, size=(500, 9))
    x = ((base + base[:, :1]) // 2 + rng.randint(0, 64, size=(500, 9))).astype(np.uint8).reshape(500, 3, 3, 1)
    spec = data_lib.DataSpec("img", (3, 3, 1), 2, "uint8", (0, 255), True)
    pre = data_lib.Preprocessor.fit(x, spec, zca=True, zca_epsilon=1e-9)
    assert pre.scale == pytest.approx(1 / 255)
    white = pre(x).numpy().reshape(500, 9)
    np.testing.assert_allclose(white.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(9), atol=2e-3)
    plain = data_lib.Preprocessor.fit(x, spec, zca=False)
    np.testing.assert_allclose(plain(x).numpy(), x / 255.0, atol=1e-6)
    vectors = data_lib.DataSpec("v", (2,), 2, "float32", None, False)
    assert data_lib.Preprocessor.fit(np.zeros((5, 2), np.float32), vectors, zca=True).is_identity


def test_preprocessor_save_load_tf_function_and_saved_model(tmp_path):
    rng = np.random.RandomState(0)
    pre = data_lib.Preprocessor(scale=0.5, mean=rng.normal(size=12),
                                zca_matrix=rng.normal(size=(12, 12)), input_shape=(2, 2, 3))
    path = str(tmp_path / "pre.npz")
    pre.save(path)
    loaded = data_lib.Preprocessor.load(path)
    x = rng.randint(0, 256, size=(5, 2, 2, 3)).astype(np.uint8)
    expected = ((x.reshape(5, 12) * 0.5 - pre.mean) @ pre.zca_matrix).reshape(5, 2, 2, 3)
    np.testing.assert_allclose(pre(x).numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tf.function(loaded)(tf.constant(x)).numpy(), expected, rtol=1e-4, atol=1e-4)
    identity_path = str(tmp_path / "identity.npz")
    data_lib.Preprocessor(input_shape=(2,)).save(identity_path)
    assert data_lib.Preprocessor.load(identity_path).is_identity

    module = tf.Module()
    module.pre = tf.function(loaded, input_signature=[tf.TensorSpec((None, 2, 2, 3), tf.uint8)])
    tf.saved_model.save(module, str(tmp_path / "sm"))
    restored = tf.saved_model.load(str(tmp_path / "sm"))
    np.testing.assert_allclose(restored.pre(tf.constant(x)).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_data_spec_roundtrip_through_json():
    spec = data_lib.DataSpec("cifar10", (32, 32, 3), 10, "uint8", (0, 255), True)
    assert data_lib.DataSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    spec = data_lib.DataSpec("moons", (2,), 2, "float32", None, False)
    assert data_lib.DataSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_augmentation():
    vectors = data_lib.DataSpec("moons", (2,), 2, "float32", None, False)
    images = data_lib.DataSpec("img", (8, 8, 1), 2, "uint8", (0, 255), True)
    assert data_lib.make_augmentation(vectors, 2, True, seed=0) is None
    assert data_lib.make_augmentation(images, 0, False, seed=0) is None
    flip_only = data_lib.make_augmentation(images, 0, True, seed=0)
    assert [type(l).__name__ for l in flip_only.layers] == ["RandomFlip"]
    augment = data_lib.make_augmentation(images, 2, True, seed=0)
    assert [type(l).__name__ for l in augment.layers] == ["RandomTranslation", "RandomFlip"]
    x = tf.random.stateless_normal((16, 8, 8, 1), seed=[0, 0])
    np.testing.assert_array_equal(augment(x, training=False).numpy(), x.numpy())
    out = augment(x, training=True).numpy()
    assert out.shape == x.shape and not np.allclose(out, x.numpy())


# ---------------------------------------------------------------------------
# Loaders.

def test_synthetic_sets():
    data = data_lib.load(make_config(dataset="two_circles", num_train_synthetic=100, num_test_synthetic=30))
    assert data.x_train.shape == (100, 2) and data.x_train.dtype == np.float32
    assert data.x_test.shape == (30, 2) and data.y_train.dtype == np.int64
    assert data.spec == data_lib.DataSpec("two_circles", (2,), 2, "float32", None, False)
    assert data.preprocessor.is_identity
    radii = np.linalg.norm(data.x_train, axis=1)
    assert radii[data.y_train == 1].mean() < radii[data.y_train == 0].mean()  # factor 0.8: inner class 1
    for factor in (0.8, 0.5):  # noise 0.01 (the default): each ring within 0.05 of its radius
        rings = data_lib.load(make_config(dataset="two_circles", num_train_synthetic=100, circles_factor=factor))
        radii = np.linalg.norm(rings.x_train, axis=1)
        np.testing.assert_allclose(radii[rings.y_train == 0], 1.0, atol=0.05)
        np.testing.assert_allclose(radii[rings.y_train == 1], factor, atol=0.05)
    moons = data_lib.load(make_config(dataset="moons", num_train_synthetic=100))
    assert not np.array_equal(moons.x_test[:100], moons.x_train)  # test drawn with another seed


def test_npz_images_and_vectors(tmp_path):
    x, y = tiny_images(20, shape=(5, 6))
    data = data_lib.load(make_config(dataset=write_npz(tmp_path / "i.npz", x, y, x[:3], y[:3]),
                                     num_labeled=4))
    assert data.spec == data_lib.DataSpec(f"npz:{tmp_path / 'i.npz'}", (5, 6, 1), 2, "uint8", (0, 255), True)
    assert data.x_train.shape == (20, 5, 6, 1) and data.x_test.shape == (3, 5, 6, 1)

    vx = np.random.RandomState(0).normal(size=(30, 7))
    vy = np.arange(30) % 3
    data = data_lib.load(make_config(dataset=write_npz(tmp_path / "v.npz", vx, vy, vx[:5], vy[:5],
                                                       num_classes=4), num_labeled=8, balanced=False))
    assert data.spec.input_shape == (7,) and data.spec.num_classes == 4
    assert data.spec.raw_dtype == "float32" and data.spec.pixel_range is None and not data.spec.is_image
    assert data.x_train.dtype == np.float32 and data.preprocessor.is_identity


def _write_png_classes(root, classes, per_class, size=(6, 5), rng=None):
    from PIL import Image
    rng = rng or np.random.RandomState(0)
    images = {}
    for c in classes:
        os.makedirs(root / c, exist_ok=True)
        for i in range(per_class):
            pixels = rng.randint(0, 256, size=(size[0], size[1], 3)).astype(np.uint8)
            Image.fromarray(pixels).save(root / c / f"{i:03d}.png")
            images[(c, i)] = pixels
    return images


def test_folder_dataset_split_per_class(tmp_path):
    images = _write_png_classes(tmp_path / "imgs", ["cat", "dog"], per_class=5)
    data = data_lib.load(make_config(dataset=f"folder:{tmp_path / 'imgs'}", num_labeled=2))
    assert data.spec.input_shape == (6, 5, 3) and data.spec.num_classes == 2 and data.spec.is_image
    assert data.x_train.dtype == np.uint8
    assert np.bincount(data.y_test).tolist() == [1, 1] and np.bincount(data.y_train).tolist() == [4, 4]
    # Pixels are read exactly, with the label of their folder.
    lookup = {img.tobytes(): ["cat", "dog"].index(c) for (c, _), img in images.items()}
    for x, y in zip(np.concatenate([data.x_train, data.x_test]), np.concatenate([data.y_train, data.y_test])):
        assert lookup[x.tobytes()] == y
    again = data_lib.load(make_config(dataset=f"folder:{tmp_path / 'imgs'}", num_labeled=2))
    np.testing.assert_array_equal(again.x_test, data.x_test)


def test_folder_dataset_with_train_and_test_dirs(tmp_path):
    _write_png_classes(tmp_path / "d" / "train", ["a", "b", "c"], per_class=3)
    _write_png_classes(tmp_path / "d" / "test", ["a", "b", "c"], per_class=2, rng=np.random.RandomState(1))
    data = data_lib.load(make_config(dataset=f"folder:{tmp_path / 'd'}", num_labeled=3))
    assert len(data.x_train) == 9 and len(data.x_test) == 6 and data.spec.num_classes == 3
    np.testing.assert_array_equal(data.y_test, [0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("name", ["cifar10", "svhn_cropped"])
def test_tfds_mocked(name, tmp_path):
    import tensorflow_datasets as tfds
    # zca=False: a 3072x3072 eigendecomposition would dominate the test time.
    config = make_config(dataset=name, num_labeled=10, balanced=False, zca=False,
                         data_dir=str(tmp_path / "tfds"), tfds_manual_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=40):
        data = data_lib.load(config)
    assert data.spec == data_lib.DataSpec(name, (32, 32, 3), 10, "uint8", (0, 255), True)
    assert data.x_train.shape == (40, 32, 32, 3) and data.x_train.dtype == np.uint8
    assert data.x_test.shape == (40, 32, 32, 3) and data.y_train.dtype == np.int64
    assert data.num_labeled == 10
    (x_l, _), (x_u, _) = take(data_lib.train_dataset(data, 4, 8, seed=0), 1)[0]
    assert x_u.shape == (8, 32, 32, 3) and 0.0 <= x_u.min() and x_u.max() <= 1.0


def test_tfds_not_prepared_without_manual_dir_is_a_config_error(tmp_path):
    import tensorflow_datasets as tfds
    config = make_config(dataset="cifar10", data_dir=str(tmp_path / "tfds"))
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(ConfigError) as error:
            data_lib.load(config)
    message = str(error.value)
    for part in ("--data_dir=", "--tfds_manual_dir=", "internet", "not prepared"):
        assert part in message


# ---------------------------------------------------------------------------
# Input errors.

@pytest.mark.parametrize("changes, flag", [
    (dict(dataset="nonexistent_set"), "--dataset"),
    (dict(dataset="imdb_reviews"), "--dataset"),            # a tfds set, but text
    (dict(dataset="npz:/no/such/file.npz"), "--dataset"),
    (dict(dataset="folder:/no/such/dir"), "--dataset"),
    (dict(noise=-0.1), "--noise"),
    (dict(circles_factor=1.0), "--circles_factor"),
    (dict(num_labeled=0), "--num_labeled"),
    (dict(validation_size=-1), "--validation_size"),
    (dict(batch_size=0), "--batch_size"),
    (dict(unlabeled_batch_size=-2), "--unlabeled_batch_size"),
    (dict(eval_batch_size=0), "--eval_batch_size"),
    (dict(num_train_synthetic=0), "--num_train_synthetic"),
    (dict(augment_translate=-1), "--augment_translate"),
    (dict(tfds_manual_dir="/no/such/dir"), "--tfds_manual_dir"),
])
def test_validate_errors_name_the_flag(changes, flag):
    with pytest.raises(ConfigError, match=flag):
        data_lib.validate(Config(**changes))  # unresolved config, as the CLI passes it


def test_unknown_dataset_lists_allowed_values():
    with pytest.raises(ConfigError) as error:
        data_lib.validate(Config(dataset="mnits"))
    for allowed in ("two_circles", "moons", "mnist", "cifar10", "npz:PATH", "folder:PATH"):
        assert allowed in str(error.value)


def test_validate_accepts_good_names(tmp_path):
    for name in ("two_circles", "moons", "mnist", "fashion_mnist", "svhn_cropped", "cifar10",
                 "cifar100", "emnist", f"folder:{tmp_path}"):
        data_lib.validate(Config(dataset=name))


def test_load_errors_name_the_flag(tmp_path):
    with pytest.raises(ConfigError, match=r"--num_labeled=2000 .*1500"):
        data_lib.load(make_config(dataset="moons", num_labeled=2000))
    with pytest.raises(ConfigError, match=r"--num_labeled=1496 .*1495 examples after the validation"):
        data_lib.load(make_config(dataset="moons", num_labeled=1496, validation_size=5))
    with pytest.raises(ConfigError, match=r"--num_labeled=9 must be a multiple of the 2 classes"):
        data_lib.load(make_config(dataset="moons", num_labeled=9))
    data_lib.load(make_config(dataset="moons", num_labeled=9, balanced=False))
    with pytest.raises(ConfigError, match="--validation_size"):
        data_lib.load(make_config(dataset="moons", validation_size=1500))
    with pytest.raises(ConfigError, match="--zca"):
        data_lib.load(make_config(dataset="moons", zca=True))
    x, y = tiny_images(10)
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=y)
    with pytest.raises(ConfigError, match=r"--dataset.*x_test, y_test"):
        data_lib.load(make_config(dataset=f"npz:{tmp_path / 'bad.npz'}"))
    name = write_npz(tmp_path / "f.npz", x.astype(np.float32), y, x[:2].astype(np.float32), y[:2])
    with pytest.raises(ConfigError, match="--dataset.*uint8 images"):
        data_lib.load(make_config(dataset=name))


# ---------------------------------------------------------------------------
# Streamed inputs (memory maps): same batches as in memory, only the batch's rows read.

def write_npy_dir(path, x_train, y_train, x_test, y_test):
    os.makedirs(path, exist_ok=True)
    for key, array in dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test).items():
        np.save(os.path.join(path, key + ".npy"), array)
    return f"npz:{path}"


@pytest.mark.parametrize("validation_size", [0, 10])
def test_npy_directory_streams_and_gives_the_in_memory_batches(tmp_path, validation_size):
    x, y = tiny_images(60, shape=(6, 5), num_classes=3)
    x_test, y_test = tiny_images(23, shape=(6, 5), num_classes=3, seed=1)
    common = dict(num_labeled=9, validation_size=validation_size, zca=True)
    in_memory = data_lib.load(make_config(dataset=write_npz(tmp_path / "d.npz", x, y, x_test, y_test), **common))
    streamed = data_lib.load(make_config(dataset=write_npy_dir(tmp_path / "d", x, y, x_test, y_test), **common))
    assert not data_lib.is_streamed(in_memory.x_train)
    assert data_lib.is_streamed(streamed.x_train) and data_lib.is_streamed(streamed.x_test)
    assert isinstance(streamed.x_train, data_lib.Rows if validation_size else data_lib.NpyRows)
    np.testing.assert_array_equal(streamed.labeled_indices, in_memory.labeled_indices)
    np.testing.assert_array_equal(streamed.y_train, in_memory.y_train)
    np.testing.assert_array_equal(np.asarray(streamed.x_train), in_memory.x_train)
    np.testing.assert_allclose(streamed.preprocessor.zca_matrix, in_memory.preprocessor.zca_matrix, rtol=1e-6)
    for a, b in zip(take(data_lib.train_dataset(streamed, 4, 7, seed=5, start_step=3), 12),
                    take(data_lib.train_dataset(in_memory, 4, 7, seed=5, start_step=3), 12)):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)
    splits = ("test", "val") if validation_size else ("test",)
    for split in splits:
        a = take(data_lib.eval_dataset(streamed, split, batch_size=8), 100)
        b = take(data_lib.eval_dataset(in_memory, split, batch_size=8), 100)
        assert len(a) == len(b) and len(a[-1][1]) < 8  # last batch smaller
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)


def test_row_reader_reads_only_the_requested_rows():
    reads = []

    class Recording(np.ndarray):
        def __getitem__(self, key):
            reads.append(np.array(key, copy=True))
            return np.asarray(self).__getitem__(key)

    base = np.arange(50 * 3, dtype=np.uint8).reshape(50, 3).view(Recording)
    rows = data_lib.Rows(base, np.arange(10, 50))  # e.g. the rows left after a validation split
    read = data_lib.row_reader(rows)
    out = read(tf.constant([0, 5, 39], tf.int64)).numpy()
    np.testing.assert_array_equal(out, np.asarray(base)[[10, 15, 49]])
    assert [r.tolist() for r in reads] == [[10, 15, 49]]


def test_npy_rows_read_what_numpy_reads(tmp_path):
    base = np.arange(30 * 4 * 3, dtype=np.uint8).reshape(30, 4, 3)
    np.save(tmp_path / "a.npy", base)
    rows = data_lib.NpyRows(str(tmp_path / "a.npy"))
    assert rows.shape == base.shape and rows.dtype == np.uint8 and len(rows) == 30 and rows.nbytes == base.nbytes
    for key in (0, -1, slice(2, 9), slice(None, None, 4), np.array([29, 0, 7, 7]), (slice(1, 3), 2),
                (np.array([5, 1]), 0, 1), np.arange(30) % 3 == 0):
        np.testing.assert_array_equal(rows[key], base[key])
    np.testing.assert_array_equal(np.asarray(rows), base)
    channels = data_lib.NpyRows(str(tmp_path / "a.npy"), row_shape=(4, 3, 1))
    np.testing.assert_array_equal(channels[[3, 4]], base[[3, 4], :, :, None])
    with pytest.raises(IndexError):
        rows[np.array([30])]
    floats = np.random.RandomState(0).normal(size=(7, 5))
    np.save(tmp_path / "f.npy", floats)
    np.testing.assert_array_equal(data_lib.NpyRows(str(tmp_path / "f.npy"))[[6, 2]], floats[[6, 2]])


def test_rows_indexing_matches_numpy():
    base = np.arange(40 * 2 * 2, dtype=np.uint8).reshape(40, 2, 2)
    indices = np.array([3, 1, 30, 7, 7])
    rows, expected = data_lib.Rows(base, indices), base[indices]
    assert rows.shape == expected.shape and len(rows) == 5 and rows.dtype == np.uint8 and rows.ndim == 3
    for key in (2, slice(1, 4), np.array([4, 0]), (slice(None), 0, 1), (np.array([1, 2]), 1)):
        np.testing.assert_array_equal(rows[key], expected[key])
    np.testing.assert_array_equal(np.asarray(rows, np.float32), expected.astype(np.float32))
    nested = data_lib.select_rows(rows, np.array([0, 2]))
    np.testing.assert_array_equal(np.asarray(nested), base[[3, 30]])
    low, high = data_lib.column_range(rows, chunk_size=2)
    np.testing.assert_array_equal(low, expected.min(axis=0))
    np.testing.assert_array_equal(high, expected.max(axis=0))


def test_tfds_split_is_written_once_and_read_from_disk(tmp_path):
    import tensorflow_datasets as tfds
    config = make_config(dataset="cifar10", num_labeled=10, balanced=False, zca=False,
                         data_dir=str(tmp_path / "tfds"), tfds_manual_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=30):
        data = data_lib.load(config)
        files = sorted((tmp_path / "tfds" / data_lib.ARRAY_CACHE_DIR / "cifar10").iterdir())
        stamps = [f.stat().st_mtime_ns for f in files]
        again = data_lib.load(config)
    assert isinstance(data.x_train, data_lib.NpyRows)
    assert [f.name.split("-")[0] for f in files] == ["test", "test", "train", "train"]
    assert not any(".tmp" in f.name for f in files)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # reused, not rewritten
    np.testing.assert_array_equal(np.asarray(again.x_train), np.asarray(data.x_train))
    np.testing.assert_array_equal(again.y_test, data.y_test)


def test_npy_rows_survive_pickling_and_concurrent_reads(tmp_path):
    import pickle
    from concurrent.futures import ThreadPoolExecutor
    base = np.random.RandomState(3).randint(0, 256, size=(200, 8), dtype=np.uint8)
    np.save(tmp_path / "a.npy", base)
    rows = pickle.loads(pickle.dumps(data_lib.NpyRows(str(tmp_path / "a.npy"))))
    requests = [np.random.RandomState(k).randint(0, 200, 50) for k in range(64)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda idx: rows[idx], requests))
    for idx, out in zip(requests, results):
        np.testing.assert_array_equal(out, base[idx])
