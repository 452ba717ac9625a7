"""Faults a user can cause or suffer: bad input refused before anything is written, run
directories that keep their identity and survive kills, atomic exports, blown-up weights."""
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import export, robustness, runs, training
from tf_advssl.config import ConfigError

from test_training import comparable, tiny_config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vectors_npz(path, x_train=None, x_test=None, seed=0):
    rng = np.random.default_rng(seed)
    x_train = rng.normal(size=(120, 5)).astype(np.float32) if x_train is None else x_train
    x_test = rng.normal(size=(40, 5)).astype(np.float32) if x_test is None else x_test
    np.savez(path, x_train=x_train, y_train=(x_train[:, 0] > 0).astype(np.int64),
             x_test=x_test, y_test=(np.nan_to_num(x_test[:, 0]) > 0).astype(np.int64))
    return f"npz:{path}"


# ----- case 2: every check that the flags and the data allow, before the first byte ----------

@pytest.mark.parametrize("changes, flag", [
    (dict(network="foo"), "--network"),
    (dict(eval_every=0), "--eval_every"),
    (dict(log_every=0), "--log_every"),
    (dict(checkpoint_every=-1), "--checkpoint_every"),
    (dict(mlp_widths=(-5,)), "--mlp_widths"),
    (dict(dropout=1.5), "--dropout"),
])
def test_bad_flag_is_refused_before_anything_is_written(tmp_path, changes, flag):
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=flag):
        training.run(tiny_config(workdir, **changes))
    assert not workdir.exists()


def test_unknown_network_error_lists_the_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as error:
        training.run(tiny_config(tmp_path / "run", network="foo"))
    for name in ("mlp", "lenet", "conv_small", "wrn28_2"):
        assert name in str(error.value)


def test_feature_vectors_default_to_an_mlp_and_refuse_an_image_network(tmp_path):
    dataset = vectors_npz(tmp_path / "vectors.npz")
    config = tiny_config(tmp_path / "default", dataset=dataset, num_labeled=10, mlp_widths=None)
    assert training.validate(config).network == "mlp"
    metrics = training.run(config.replace(mlp_widths=(8,), train_steps=4, checkpoint_every=2,
                                          eval_every=2))
    assert metrics["train_steps"] == 4
    workdir = tmp_path / "conv"
    with pytest.raises(ConfigError, match=r"--network=conv_small needs images.*mlp"):
        training.run(config.replace(workdir=str(workdir), network="conv_small"))
    assert not workdir.exists()


def test_network_that_does_not_fit_the_images_is_refused_before_writing(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(60, 6, 6), dtype=np.uint8)
    path = tmp_path / "small.npz"
    np.savez(path, x_train=images[:40], y_train=np.arange(40) % 2, x_test=images[40:], y_test=np.arange(20) % 2)
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match="--network=conv_small"):
        training.run(tiny_config(workdir, dataset=f"npz:{path}", num_labeled=4, network="conv_small",
                                 mlp_widths=None))
    assert not workdir.exists()


# ----- case 3: a run is the same run whatever path reaches it ---------------------------------

def test_trailing_slash_copied_and_moved_run_directories_are_the_same_run(tmp_path):
    first = training.run(tiny_config(tmp_path / "a"))
    again = training.run(tiny_config(str(tmp_path / "a") + "/"))
    assert comparable(again) == comparable(first)
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    assert comparable(training.run(tiny_config(tmp_path / "copy"))) == comparable(first)

    interrupted = training.run(tiny_config(tmp_path / "b"), stop_after=13)
    assert interrupted["interrupted"]
    os.rename(tmp_path / "b", tmp_path / "moved")
    assert comparable(training.run(tiny_config(tmp_path / "moved"))) == comparable(first)


def test_other_config_error_names_the_field_and_warns_that_overwrite_deletes(tmp_path):
    training.run(tiny_config(tmp_path / "a"))
    with pytest.raises(ConfigError) as error:
        training.run(tiny_config(tmp_path / "a", seed=3))
    assert "seed" in str(error.value) and "delete" in str(error.value)


def test_a_run_written_before_a_config_field_existed_resumes_as_that_field_default(tmp_path):
    config = tiny_config(tmp_path / "a")
    os.makedirs(config.workdir)
    written = json.loads(config.to_json())
    del written["circles_factor"]  # as config.json was before --circles_factor
    with open(os.path.join(config.workdir, "config.json"), "w") as f:
        json.dump(written, f)
    assert runs.check_workdir(config) == "resume"
    with pytest.raises(ConfigError, match="circles_factor"):
        runs.check_workdir(config.replace(circles_factor=0.5))


def test_a_run_resumes_when_its_data_is_found_through_another_path(tmp_path):
    config = tiny_config(tmp_path / "a", data_dir="/data/tfds", tfds_manual_dir="/data/mnist")
    runs.prepare_workdir(config, runs.check_workdir(config))
    moved = config.replace(data_dir="/elsewhere/../data/tfds", tfds_manual_dir=str(tmp_path))
    assert runs.check_workdir(moved) == "resume"
    with pytest.raises(ConfigError, match="num_labeled"):
        runs.check_workdir(moved.replace(num_labeled=20))


# ----- case 4: a workdir that cannot be one -----------------------------------------------------

def test_workdir_that_is_a_file_or_under_a_file_or_not_writable(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("not a run")
    with pytest.raises(ConfigError, match="--workdir=.* is a file"):
        training.run(tiny_config(a_file))
    with pytest.raises(ConfigError, match="--workdir=.*cannot be created"):
        training.run(tiny_config(a_file / "run"))
    assert a_file.read_text() == "not a run"
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ConfigError, match="--workdir=.* is not writable"):
        training.run(tiny_config(tmp_path / "readonly" / "run"))


def test_workdir_that_is_a_file_gives_a_one_line_cli_error(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "train.py"), f"--workdir={a_file}"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --workdir=")


# ----- case 5: killed after the final checkpoint ----------------------------------------------

class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs."""


def test_kill_after_the_final_checkpoint_loses_nothing(tmp_path, monkeypatch):
    config = tiny_config(tmp_path / "a", mlp_batch_norm=True, eval_every=4, checkpoint_every=12)
    uninterrupted = training.run(config)

    def killed(*args, **kwargs):
        raise Killed()

    with monkeypatch.context() as patch:  # the final checkpoint is written, then the process dies
        patch.setattr(training, "recalibrate_batch_norm", killed)
        with pytest.raises(Killed):
            training.run(config.replace(workdir=str(tmp_path / "b")))
    assert tf.train.latest_checkpoint(str(tmp_path / "b" / "checkpoints")).endswith("-24")
    resumed = training.run(config.replace(workdir=str(tmp_path / "b")))
    assert comparable(resumed) == comparable(uninterrupted)
    assert resumed["loss_terms"] and resumed["steps_per_second"] is not None
    assert [h["step"] for h in resumed["history"]] == [4, 8, 12, 16, 20]


# ----- case 6: exports appear complete or not at all ------------------------------------------

def test_interrupted_export_leaves_no_version_and_the_rerun_cleans_up(tmp_path, monkeypatch):
    training.run(tiny_config(tmp_path / "run"))
    model, _, spec, preprocessor = runs.restore_model(str(tmp_path / "run"))
    base = str(tmp_path / "run" / "export")
    archive_class = type(keras.export.ExportArchive())  # the backend's subclass
    original = archive_class.write_out

    def killed_mid_write(self, filepath, *args, **kwargs):
        os.makedirs(os.path.join(filepath, "variables"))  # what a kill leaves: no saved_model.pb
        raise Killed()

    monkeypatch.setattr(archive_class, "write_out", killed_mid_write)
    with pytest.raises(Killed):
        export.export_saved_model(model, base, spec=spec, preprocessor=preprocessor)
    assert not [name for name in os.listdir(base) if name.isdigit()]  # nothing TF Serving would serve

    monkeypatch.setattr(archive_class, "write_out", original)
    path = export.export_saved_model(model, base, spec=spec, preprocessor=preprocessor)
    assert os.path.basename(path) == "1" and os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert os.listdir(base) == ["1"]  # the leftover is gone
    x = np.array([[0.0, 1.0], [0.5, 0.1]], np.float32)
    reloaded = tf.saved_model.load(path).signatures["serving_default"](inputs=x)["probabilities"]
    np.testing.assert_allclose(reloaded.numpy(), tf.nn.softmax(model.classifier(x, training=False)).numpy(),
                               atol=1e-6)


def test_end_of_run_export_is_atomic(tmp_path, monkeypatch):
    def killed_mid_write(self, filepath, *args, **kwargs):
        os.makedirs(os.path.join(filepath, "variables"))
        raise Killed()

    config = tiny_config(tmp_path / "run", export=True)
    with monkeypatch.context() as patch:
        patch.setattr(type(keras.export.ExportArchive()), "write_out", killed_mid_write)
        with pytest.raises(Killed):
            training.run(config)
    assert not [n for n in os.listdir(tmp_path / "run" / "export") if n.isdigit()]
    metrics = training.run(config)
    assert os.listdir(tmp_path / "run" / "export") == ["1"]
    assert metrics["export_path"].endswith(os.path.join("export", "1"))


# ----- case 7: non-finite data --------------------------------------------------------------

@pytest.mark.parametrize("array, index", [("x_train", 17), ("x_test", 5)])
def test_non_finite_inputs_are_refused_naming_the_array_and_row(tmp_path, array, index):
    rng = np.random.default_rng(1)
    arrays = {"x_train": rng.normal(size=(120, 5)).astype(np.float32),
              "x_test": rng.normal(size=(40, 5)).astype(np.float32)}
    arrays[array][index, 2] = np.nan
    arrays[array][index + 3, 0] = np.inf
    dataset = vectors_npz(tmp_path / "bad.npz", **arrays)
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=rf"{array}\[{index}\] holds nan"):
        training.run(tiny_config(workdir, dataset=dataset, num_labeled=10))
    assert not workdir.exists()


def test_non_finite_inputs_in_a_streamed_directory_are_refused(tmp_path):
    rng = np.random.default_rng(2)
    directory = tmp_path / "arrays"
    directory.mkdir()
    x_train = rng.normal(size=(100, 3)).astype(np.float32)
    x_train[70, 1] = -np.inf
    for key, value in (("x_train", x_train), ("y_train", np.arange(100) % 2),
                       ("x_test", rng.normal(size=(20, 3)).astype(np.float32)), ("y_test", np.arange(20) % 2)):
        np.save(directory / f"{key}.npy", value)
    with pytest.raises(ConfigError, match=r"x_train\[70\] holds -inf"):
        training.run(tiny_config(tmp_path / "run", dataset=f"npz:{directory}", num_labeled=10))


# ----- case 8: a checkpoint is only written of a model whose outputs are finite -------------

def test_blown_up_weights_are_never_checkpointed(tmp_path):
    workdir = tmp_path / "run"
    config = tiny_config(workdir, learning_rate=1e30, checkpoint_every=1, steps_per_execution=1,
                         mlp_batch_norm=False)
    with pytest.raises(training.TrainingDivergedError, match="not finite"):
        training.run(config)
    latest = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    if latest is not None:  # whatever was kept still computes numbers
        model, _, _, _ = runs.restore_model(str(workdir))
        for variable in model.variables:
            assert np.all(np.isfinite(np.asarray(variable)))
        x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
        assert np.all(np.isfinite(model.classifier(x, training=False).numpy()))


def test_check_model_finite_catches_finite_weights_with_overflowing_outputs():
    keras.utils.set_random_seed(0)
    classifier = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    for layer in classifier.layers:
        layer.kernel.assign(np.full(layer.kernel.shape, 1e30, np.float32))

    class Model:
        variables = classifier.variables
        teacher = None

    Model.classifier = classifier
    with pytest.raises(training.TrainingDivergedError, match="outputs"):
        training.check_model_finite(Model, np.ones((3, 2), np.float32), 5, "/nonexistent")


# ----- case 9: evaluating an unfinished run says so -----------------------------------------

def test_evaluating_an_unfinished_run_warns_and_reports_the_step(tmp_path, capsys):
    config = tiny_config(tmp_path / "run", train_steps=40, checkpoint_every=8)
    training.run(config, stop_after=17)
    [result] = robustness.evaluate(robustness.EvaluationConfig(workdirs=(str(tmp_path / "run"),),
                                                               attack="fgm", eps=(0.1,)), verbose=False)
    assert "unfinished" in capsys.readouterr().err
    assert result["step"] == 16 and result["train_steps"] == 40 and result["finished"] is False
    assert "step 16 of 40" in result["name"]
    saved = json.loads((tmp_path / "run" / "robustness.json").read_text())["attacks"]["fgm"]
    assert saved["step"] == 16 and saved["finished"] is False


# ----- case 10: the last progress line shows the final test error -----------------------------

def test_final_progress_line_shows_the_final_test_error(tmp_path, capsys):
    metrics = training.run(tiny_config(tmp_path / "run", verbose=1, eval_every=10, train_steps=24))
    assert metrics["history"][-1]["test_error"] != metrics["test_error"]  # else the test could not fail
    lines = [line for line in capsys.readouterr().out.replace("\r", "\n").splitlines() if "test_error" in line]
    assert lines[-1].rstrip().endswith(f"test_error: {metrics['test_error']:.4f}")


def test_bn_re_estimation_sees_the_training_augmentation(tmp_path):
    """The statistics describe the inputs the weights were fitted to: augmented ones."""
    config = training.validate(tiny_config(tmp_path / "run", bn_recalibration_examples=64,
                                           unlabeled_batch_size=32))
    data = training.data_lib.load(config)
    network = keras.Sequential([keras.Input((2,)), training.layers.BatchNormalization()])

    class Model:
        classifier, teacher = network, None

        @staticmethod
        def augment(x):
            return x + 100.0

    assert training.recalibrate_batch_norm(Model, data, config) == 2
    indices = np.random.default_rng(config.seed + 7).permutation(len(data.x_train))[:64]
    expected = np.asarray(data.x_train)[indices].mean(0) + 100.0
    np.testing.assert_allclose(network.layers[0].moving_mean.numpy(), expected, rtol=1e-5)
