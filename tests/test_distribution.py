"""tf.distribute: two replicas give the single-device update; two worker processes give
the weights of one process.  Both run in processes of their own (``distributed_worker.py``
states what is compared and how random draws are controlled)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import data as data_lib
from tf_advssl import distribution, methods, runs, training
from tf_advssl.config import Config, ConfigError

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
TIMEOUT_S = 600


def worker_env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def test_global_batch_is_split_into_consecutive_replica_slices():
    config = training.validate(Config(num_train_synthetic=40, num_test_synthetic=10))
    data = data_lib.load(config)
    whole = list(data_lib.train_dataset(data, 4, 8, seed=3).take(2))
    sliced = list(data_lib.train_dataset(data, 4, 8, seed=3, num_replicas=2).take(4))
    second_only = list(data_lib.train_dataset(data, 4, 8, seed=3, num_replicas=2, first_replica=1,
                                              num_local_replicas=1).take(2))
    for step in range(2):
        replica_batches = sliced[2 * step:2 * step + 2]
        for part in range(2):
            for item in range(2):
                joined = np.concatenate([b[part][item].numpy() for b in replica_batches])
                np.testing.assert_array_equal(joined, whole[step][part][item].numpy())
        assert replica_batches[0][0][0].shape[0] == 2 and replica_batches[0][1][0].shape[0] == 4
        np.testing.assert_array_equal(second_only[step][1][1].numpy(), replica_batches[1][1][1].numpy())


def test_batch_sizes_must_divide_by_replicas_and_sync_bn_needs_finite_difference_vat():
    config = training.validate(Config(batch_size=5))
    with pytest.raises(ConfigError, match="--batch_size=5 does not divide by the 2 replicas"):
        distribution.check_config(config, 2)
    distribution.check_config(config, 1)
    exact = training.validate(Config(sync_batch_norm=True, method_params={"vat_xi": 0.0}))
    with pytest.raises(ConfigError, match="--sync_batch_norm.*--vat_xi > 0"):
        distribution.check_config(exact, 2)
    distribution.check_config(exact.replace(method_params=dict(exact.method_params, vat_xi=1e-6)), 2)


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        distribution.make_strategy("multi_worker")


def test_two_replicas_give_the_single_device_update_for_every_method(tmp_path):
    out = tmp_path / "replicas.json"
    result = subprocess.run([sys.executable, WORKER, "replicas", f"--out={out}"], capture_output=True, text=True,
                            timeout=TIMEOUT_S, env=worker_env())
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(methods.METHODS) <= {key.split("+")[0] for key in results}
    compared = {key: r for key, r in results.items() if "skipped" not in r}
    skipped = {key: r["skipped"] for key, r in results.items() if "skipped" in r}
    assert not skipped, skipped  # SCAR too: the worker makes its stage-1 run
    for key, r in compared.items():
        assert r["num_replicas"] == 2 and r["same_count"], key
        assert r["shapes_one_device"] == [[4, 2]], key
        assert r["shapes_per_replica"] == [[2, 2, 4], [2, 2, 4]], key  # half of each batch per replica
        tolerance = 2e-6 * max(1.0, r["largest_value"])
        assert r["max_variable_difference"] <= tolerance, (key, r["worst_variable"], r["max_variable_difference"])
        assert r["max_log_difference"] <= 1e-5, (key, r["max_log_difference"])
    assert {"temporal_ensembling", "xvat", "xvat+transductive_lazy_adam", "fm_gan", "supervised+batch_norm",
            "scar"} <= set(compared)
    # SCAR trained on the labeled set grown by its selection, the same one in both runs.
    scar = results["scar"]
    assert scar["grown_one_device"] == scar["grown_two_replicas"]
    assert scar["num_labeled_before"] < len(scar["grown_one_device"]["labeled"]) < scar["num_train"], scar


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def final_weights(workdir):
    model = runs.restore_model(str(workdir))[0]
    return [v.numpy() for v in model.variables]


def test_two_worker_processes_give_the_weights_of_one_process(tmp_path):
    """Two MultiWorkerMirroredStrategy workers on 127.0.0.1 (one CPU replica each) and a
    single default-strategy run train VAT (exact power iteration) on the same global
    batches; the chief's checkpoint equals the single run's, the chief alone writes
    the run directory (export included).  The single run is this test process's own,
    made while the workers train: on one replica ``replica_consistent_random`` draws what
    keras.random draws, and VAT shuffles nothing."""
    base = dict(method="vat", train_steps=4, checkpoint_every=2, eval_every=2, log_every=2, verbose=0,
                num_train_synthetic=64, num_test_synthetic=32, batch_size=4, unlabeled_batch_size=8,
                mlp_widths=(8,), method_params={"vat_xi": 0.0},
                steps_per_execution=2)  # both steps between two checkpoints in one call (a tf.while_loop)
    configs = {"single": Config(workdir=str(tmp_path / "single"), export=False, **base),
               "multi": Config(workdir=str(tmp_path / "multi"), strategy="multi_worker", export=True, **base)}
    (tmp_path / "multi.json").write_text(configs["multi"].to_json())
    hosts = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    processes, logs = [], [tmp_path / f"m{task_id}.log" for task_id in range(2)]
    try:
        for task_id in range(2):
            env = worker_env(TF_CONFIG=distribution.cluster_config(hosts, "worker", task_id))
            with open(logs[task_id], "w") as log:  # a file, not a pipe: nobody reads while the single run trains
                processes.append(subprocess.Popen(
                    [sys.executable, WORKER, "train", f"--config={tmp_path / 'multi.json'}",
                     f"--out={tmp_path / f'm{task_id}.out'}"], stdout=log, stderr=subprocess.STDOUT, env=env))
        single = training.run(configs["single"])
        for p in processes:
            p.wait(timeout=TIMEOUT_S)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(processes, logs):
        assert p.returncode == 0, log.read_text(errors="replace")[-3000:]
    chief, other = (json.loads((tmp_path / name).read_text()) for name in ("m0.out", "m1.out"))
    assert single["train_steps"] == chief["train_steps"] == other["train_steps"] == 4
    assert chief["test_error"] == other["test_error"] == pytest.approx(single["test_error"])
    for a, b in zip(final_weights(tmp_path / "single"), final_weights(tmp_path / "multi")):
        np.testing.assert_allclose(a, b, atol=2e-6)
    assert (tmp_path / "multi" / "export" / "1" / "saved_model.pb").exists() and "export_path" not in other
    assert sorted(os.listdir(tmp_path / "multi")) == sorted(os.listdir(tmp_path / "single") + ["export"])
    assert tf.train.latest_checkpoint(str(tmp_path / "multi" / "checkpoints")).endswith("-4")
