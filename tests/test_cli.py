"""bin/train.py and bin/export.py end to end, as a user runs them."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", script), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_train_then_export_on_two_circles(tmp_path):
    workdir = tmp_path / "run"
    args = [f"--workdir={workdir}", "--train_steps=30", "--num_train_synthetic=300",
            "--num_test_synthetic=200", "--vat_eps=0.5", "--verbose=0"]
    result = run("train.py", *args)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["train_steps"] == 30 and set(metrics["loss_terms"]) >= {"loss_nll", "loss_vat"}
    config = json.loads((workdir / "config.json").read_text())
    assert config["method"] == "vat" and config["method_params"]["vat_eps"] == 0.5
    assert config["method_params"]["vat_xi"] == 0.0  # Two Circles default: exact power iteration
    assert config["noise"] == 0.01 and config["unlabeled_batch_size"] == 300  # the whole training set
    for name in ("decision_boundary.png", "export/1/saved_model.pb", "checkpoints/checkpoint"):
        assert (workdir / name).exists(), name

    again = run("train.py", *args)  # finished: nothing is retrained or overwritten
    assert again.returncode == 0 and "complete" in again.stdout

    exported = run("export.py", f"--workdir={workdir}")
    assert exported.returncode == 0, exported.stderr[-2000:]
    assert exported.stdout.strip().endswith(os.path.join("export", "2"))
    raw = np.array([[0.0, 1.0], [0.0, 0.8], [0.5, 0.1]], np.float32)
    one = tf.saved_model.load(str(workdir / "export" / "1")).signatures["serving_default"](inputs=raw)
    two = tf.saved_model.load(str(workdir / "export" / "2")).signatures["serving_default"](inputs=raw)
    np.testing.assert_allclose(one["probabilities"].numpy(), two["probabilities"].numpy(), atol=1e-6)

    refused = run("export.py", f"--workdir={workdir}", "--version=1")
    assert refused.returncode == 2 and "already exists" in refused.stderr


def test_bad_flags_fail_fast_with_named_flag(tmp_path):
    unknown_method = run("train.py", "--method=nope", f"--workdir={tmp_path / 'a'}")
    assert unknown_method.returncode != 0
    assert "--method" in unknown_method.stderr and "vat" in unknown_method.stderr
    bad_dataset = run("train.py", "--dataset=not_a_dataset", f"--workdir={tmp_path / 'b'}")
    assert bad_dataset.returncode == 2 and "--dataset" in bad_dataset.stderr
    negative_eps = run("train.py", "--vat_eps=-1", f"--workdir={tmp_path / 'c'}")
    assert negative_eps.returncode == 2 and "--vat_eps must be >= 0" in negative_eps.stderr
    assert not any((tmp_path / name).exists() for name in "abc")


def test_run_main_maps_exceptions_to_exit_codes(capsys):
    from tf_advssl.cli import run_main
    from tf_advssl.config import ConfigError

    def raising(error):
        def body():
            raise error
        return body

    assert run_main(lambda: None) == 0 and run_main(lambda: 5) == 5
    assert run_main(raising(ConfigError("--x is bad"))) == 2
    assert capsys.readouterr().err == "error: --x is bad\n"
    assert run_main(raising(RuntimeError("diverged")), {RuntimeError: 3}) == 3
    assert run_main(raising(FileExistsError("taken")), {(KeyError, OSError): 2}) == 2
    assert capsys.readouterr().err == "error: diverged\nerror: taken\n"
    with pytest.raises(KeyError):
        run_main(raising(KeyError("other")), {RuntimeError: 3})


def test_help_groups_every_flag_once_by_topic_and_method():
    import dataclasses
    import re

    from tf_advssl import methods
    from tf_advssl.config import Config

    result = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "train.py"), "--help"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    groups, current = {}, None
    for line in result.stdout.splitlines():
        if line.endswith(" flags:"):
            current = line[:-len(" flags:")]
            groups[current] = []
        elif current and (match := re.match(r"  --(\w+): ", line)):
            groups[current].append(match.group(1))
    assert list(groups)[:4] == ["run", "data", "network", "optimizer"]
    config_flags = [flag for group in ("run", "data", "network", "optimizer") for flag in groups[group]]
    fields = [f.name for f in dataclasses.fields(Config) if f.name != "method_params"]
    assert sorted(config_flags) == sorted(fields)  # each once
    for name in methods.METHODS:
        own = [f.name for f in dataclasses.fields(methods.get_method(name).Params) if f.metadata.get("flag", True)]
        assert groups.get(f"method {name}", []) == own
