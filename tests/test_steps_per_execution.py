"""--steps_per_execution: K training steps per call of the train function give the results
of one step per call (weights, metrics, evaluation / checkpoint / log steps), stop at the
exact step of a NaN inside a block, resume as before, and bad values are refused."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import distribution, training
from tf_advssl.config import Config, ConfigError
from tf_advssl.methods import resolve

from test_training import comparable, final_weights, tiny_config  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def block_config(workdir, **changes):
    """30 steps; events at 10, 20 (eval), 15, 30 (checkpoint), 30 (log): with K=7 the blocks
    are 7, 3, 5, 5, 7, 3 steps, so a block crosses no event but fills up to K between them."""
    values = dict(train_steps=30, eval_every=10, checkpoint_every=15, log_every=30)
    values.update(changes)
    return tiny_config(workdir, **values)


@pytest.fixture
def block_sizes(monkeypatch):
    """The step counts training.run asks the train function for, in order."""
    sizes = []
    make = distribution.make_multi_step_function

    def recording(model, strategy):
        function = make(model, strategy)

        def call(iterator, num_steps):
            sizes.append(int(num_steps))
            return function(iterator, num_steps)

        return call

    monkeypatch.setattr(distribution, "make_multi_step_function", recording)
    return sizes


def summary_steps(workdir):
    """{tag: [steps]} of the run's TensorBoard events."""
    steps = {}
    for path in sorted(glob.glob(os.path.join(str(workdir), "tensorboard", "events*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    return steps


def test_k_steps_per_call_equal_one_step_per_call(tmp_path, block_sizes):
    one = training.run(block_config(tmp_path / "k1", steps_per_execution=1))
    assert block_sizes == [1] * 30
    del block_sizes[:]
    seven = training.run(block_config(tmp_path / "k7", steps_per_execution=7))
    assert block_sizes == [7, 3, 5, 5, 7, 3]
    assert comparable(seven) == comparable(one)  # test error, loss terms, eval history: bitwise
    assert [h["step"] for h in seven["history"]] == [h["step"] for h in one["history"]] == [10, 20]
    for a, b in zip(final_weights(tmp_path / "k1"), final_weights(tmp_path / "k7")):
        np.testing.assert_array_equal(a, b)
    for name in ("k1", "k7"):
        assert sorted(os.listdir(tmp_path / name / "checkpoints")) == sorted(
            os.listdir(tmp_path / "k1" / "checkpoints"))
        assert tf.train.latest_checkpoint(str(tmp_path / name / "checkpoints")).endswith("-30")
    assert summary_steps(tmp_path / "k7") == summary_steps(tmp_path / "k1")
    assert summary_steps(tmp_path / "k7")["train/loss"] == [30]


def test_interrupted_run_with_blocks_resumes_to_the_uninterrupted_run(tmp_path):
    """Interrupted inside a block's span (stop_after is an event), resumed with another K
    (which only changes the speed, so the run directory accepts it)."""
    uninterrupted = training.run(block_config(tmp_path / "a", steps_per_execution=1))
    interrupted = training.run(block_config(tmp_path / "b", steps_per_execution=7), stop_after=13)
    assert interrupted["interrupted"] and interrupted["train_steps"] == 13
    assert tf.train.latest_checkpoint(str(tmp_path / "b" / "checkpoints")) is None  # first checkpoint: 15
    interrupted = training.run(block_config(tmp_path / "c", steps_per_execution=7), stop_after=22)
    assert tf.train.latest_checkpoint(str(tmp_path / "c" / "checkpoints")).endswith("-15")
    resumed = training.run(block_config(tmp_path / "c", steps_per_execution=4))
    assert comparable(resumed) == comparable(uninterrupted)
    for a, b in zip(final_weights(tmp_path / "a"), final_weights(tmp_path / "c")):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("first_bad_step", [9, 11, 15])  # first, middle and last step of the block 8..15
def test_nan_inside_a_block_stops_at_its_step(tmp_path, monkeypatch, block_sizes, first_bad_step):
    from tf_advssl.methods.vat import VAT

    original = VAT.compute_losses

    def poisoned(self, *args):  # as test_training: step s runs with optimizer.iterations == s - 1
        terms = original(self, *args)
        terms["loss_vat"] = tf.where(self.step >= first_bad_step - 1, np.float32(np.nan), terms["loss_vat"])
        return terms

    monkeypatch.setattr(VAT, "compute_losses", poisoned)
    config = tiny_config(tmp_path, train_steps=24, checkpoint_every=8, eval_every=100, log_every=100,
                         steps_per_execution=7)
    with pytest.raises(training.TrainingDivergedError, match=f"'loss_vat' is nan at step {first_bad_step}\\b"):
        training.run(config)
    assert block_sizes == [7, 1, 7]
    state = tf.train.get_checkpoint_state(str(tmp_path / "checkpoints"))  # none of the bad weights
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-8"]
    assert not (tmp_path / "metrics.json").exists()


def test_multi_step_function_stops_after_the_first_non_finite_step():
    """The function alone: a count larger than the steps before the NaN runs up to and
    including the bad step and returns that step's logs."""
    import keras

    class Model(keras.Model):
        def __init__(self):
            super().__init__()
            self.counter = keras.Variable(0.0, trainable=False)

        def train_step(self, data):
            self.counter.assign_add(1.0)
            bad = tf.logical_and(self.counter >= 4.0, self.counter < 6.0)
            return {"loss": tf.where(bad, np.float32(np.inf), data), "count": self.counter + 0.0}

    model = Model()
    function = distribution.make_multi_step_function(model, tf.distribute.get_strategy())
    iterator = iter(tf.data.Dataset.range(100).map(lambda i: tf.cast(i, tf.float32)))
    logs, steps_run = function(iterator, tf.constant(2))
    assert int(steps_run) == 2 and float(logs["loss"]) == 1.0 and float(logs["count"]) == 2.0
    logs, steps_run = function(iterator, tf.constant(10))  # steps 3, 4: 4 is Inf
    assert int(steps_run) == 2 and float(logs["loss"]) == np.inf and float(logs["count"]) == 4.0
    logs, steps_run = function(iterator, tf.constant(1))  # one step always runs
    assert int(steps_run) == 1 and float(logs["count"]) == 5.0
    logs, steps_run = function(iterator, tf.constant(3))  # steps 6, 7, 8
    assert int(steps_run) == 3 and float(logs["loss"]) == 7.0 and float(logs["count"]) == 8.0
    assert function.experimental_get_tracing_count() == 1  # one trace for every count


def test_steps_to_next_event():
    periods = (4, 10, 0)
    assert training.steps_to_next_event(0, 30, periods, 100) == 4
    assert training.steps_to_next_event(4, 30, periods, 100) == 4
    assert training.steps_to_next_event(8, 30, periods, 100) == 2
    assert training.steps_to_next_event(8, 30, periods, 1) == 1
    assert training.steps_to_next_event(28, 30, (50,), 100) == 2  # the end of the run
    assert training.steps_to_next_event(13, 100, (50,), 7) == 7


def test_dataset_defaults():
    assert resolve(Config(dataset="two_circles")).steps_per_execution > 1
    assert resolve(Config(dataset="moons")).steps_per_execution > 1
    assert resolve(Config(dataset="mnist")).steps_per_execution == 1
    assert resolve(Config(dataset="two_circles", steps_per_execution=3)).steps_per_execution == 3


@pytest.mark.parametrize("value", [0, -2, 2.5, True])
def test_bad_value_fails_before_any_work(tmp_path, value):
    with pytest.raises(ConfigError, match="--steps_per_execution must be an integer >= 1"):
        training.run(tiny_config(tmp_path / "run", steps_per_execution=value))
    assert not (tmp_path / "run").exists()


def test_flag(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "train.py"), "--steps_per_execution=0",
                             f"--workdir={tmp_path / 'run'}"], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 2 and "--steps_per_execution must be an integer >= 1" in result.stderr
    assert not (tmp_path / "run").exists()
