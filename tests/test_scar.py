"""SCAR (seed 002, Algorithm 1): the selection criterion against the closed form of a
linear classifier, the seed's sensitivity/specificity, and the stage-2 run."""
import json

import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import data as data_lib
from tf_advssl import methods, runs, training
from tf_advssl.config import Config, ConfigError
from tf_advssl.methods import scar

from linear_models import linear_classifier  # noqa: E402


def test_selection_on_linear_model_is_the_margin_set():
    """Two classes, raw inputs scaled by s before a linear model: an L-inf FGSM step of
    size eps raising CE(predicted class) lowers the margin by eps s ||w_y - w_other||_1,
    so an example survives exactly when its margin exceeds that."""
    rng = np.random.RandomState(0)
    weights, bias = rng.normal(size=(5, 2)), rng.normal(size=2)
    scale = 1.0 / 255.0
    model = linear_classifier(weights, bias)
    preprocessor = data_lib.Preprocessor(scale=scale, input_shape=(5,))
    x = rng.uniform(0, 255, size=(600, 5)).astype(np.float32) - 127.5
    eps = 20.0
    pseudo, survives = scar.robust_selection(lambda v: model(preprocessor(v)), x, eps, attack="fgsm",
                                             batch_size=128)
    z = scale * x @ weights + bias
    predicted = z.argmax(axis=1)
    margin = np.abs(z[:, 1] - z[:, 0])
    threshold = eps * scale * np.abs(weights[:, 1] - weights[:, 0]).sum()
    clear = np.abs(margin - threshold) > 1e-4
    np.testing.assert_array_equal(pseudo, predicted)
    np.testing.assert_array_equal(survives[clear], (margin > threshold)[clear])
    assert clear.mean() > 0.99 and 0.2 < survives.mean() < 0.8


def test_selection_shrinks_with_eps_and_table_counts_add_up():
    rng = np.random.RandomState(1)
    weights, bias = rng.normal(size=(4, 2)), rng.normal(size=2)
    model = linear_classifier(weights, bias)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x @ weights + bias).argmax(axis=1)
    y[:60] = 1 - y[:60]  # 60 wrong pseudo-labels
    rows = scar.selection_table(lambda v: model(v), x, y, [0.05, 0.2, 0.8], attack="fgsm")
    selected = [row["num_selected"] for row in rows]
    assert selected[0] >= selected[1] >= selected[2] and selected[0] > selected[2]
    for row in rows:
        assert row["num_selected"] + row["num_rejected"] == 300
        assert row["sensitivity_counts"][1] == row["num_selected"]
        assert row["pseudo_label_error"] == pytest.approx(20.0)
    text = scar.format_selection_table(rows, "linear")
    assert "linear (eps = 0.2)" in text and f"({rows[1]['sensitivity_counts'][0]}/{selected[1]})" in text


def test_sensitivity_and_specificity_are_the_seeds_equations_5_and_6():
    y = np.array([0, 0, 1, 1, 2, 2])
    pseudo = np.array([0, 1, 1, 0, 2, 2])
    survives = np.array([True, True, False, False, True, False])
    stats = scar.selection_statistics(y, pseudo, survives)
    # selected {0, 1, 4}: pseudo-label right for 0 and 4; rejected {2, 3, 5}: wrong for 3.
    assert stats["sensitivity_counts"] == [2, 3] and stats["sensitivity"] == pytest.approx(200 / 3)
    assert stats["specificity_counts"] == [1, 3] and stats["specificity"] == pytest.approx(100 / 3)
    assert scar.selection_statistics(y, pseudo, np.ones(6, bool))["specificity"] is None


# ----- stage 2 -------------------------------------------------------------------------

def tiny(workdir, **changes):
    values = dict(workdir=str(workdir), train_steps=12, verbose=0, num_train_synthetic=200,
                  num_test_synthetic=100, unlabeled_batch_size=32, mlp_widths=(16, 8), export=False,
                  checkpoint_every=4)
    values.update(changes)
    return Config(**values)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("stage1") / "vat"
    training.run(tiny(workdir, method="vat", train_steps=40, method_params={"vat_eps": 0.3}))
    return workdir


def scar_config(workdir, pretrained, **params):
    return tiny(workdir, method="scar", method_params={"pretrained_workdir": str(pretrained), "scar_eps": 0.05,
                                                      "scar_epoch_steps": 5, **params})


def test_base_params_come_from_the_pretrained_run_then_flags(pretrained):
    assert methods.make_params("scar", "two_circles", {"pretrained_workdir": str(pretrained)}).base_params[
        "vat_eps"] == 0.3
    params = methods.make_params("scar", "two_circles", {"pretrained_workdir": str(pretrained), "vat_eps": 0.7})
    assert params.base_params["vat_eps"] == 0.7
    other = methods.make_params("scar", "two_circles", {"pretrained_workdir": str(pretrained),
                                                        "scar_base": "advmixup"})
    assert "mixup_alpha" in other.base_params


def test_labeled_set_grows_by_the_robust_pseudo_labeled_examples(tmp_path, pretrained):
    config = training.validate(scar_config(tmp_path / "scar", pretrained))
    data = data_lib.load(config)
    model = runs.build_model(config, data.spec, len(data.x_train))
    model.initialize_weights(config, runs.restore_model)
    stage1 = runs.restore_model(str(pretrained))[0]
    x = data.preprocessor(tf.constant(data.x_train))
    predicted = np.argmax(stage1(x, training=False).numpy(), axis=1)
    np.testing.assert_array_equal(np.argmax(model(x, training=False).numpy(), axis=1), predicted)  # theta_0 = theta~

    (tmp_path / "scar").mkdir()
    grown = model.training_data(config, data, step=0)
    _, survives = scar.robust_selection(lambda v: stage1(data.preprocessor(v), training=False), data.x_train,
                                        0.05, attack="fgsm", clip_min=data.x_train.min(axis=0),
                                        clip_max=data.x_train.max(axis=0))
    selected = np.flatnonzero(survives)
    assert 0 < len(selected) < len(data.x_train)
    np.testing.assert_array_equal(grown.labeled_indices, np.union1d(data.labeled_indices, selected))
    added = np.setdiff1d(selected, data.labeled_indices)
    np.testing.assert_array_equal(grown.y_train[added], predicted[added])  # pseudo-labels
    np.testing.assert_array_equal(grown.y_train[data.labeled_indices], data.y_train[data.labeled_indices])
    record = json.loads((tmp_path / "scar" / "scar_selection.json").read_text())["epochs"][0]
    assert record["epoch"] == 1 and record["num_selected"] == len(selected)
    correct = predicted == data.y_train
    assert record["sensitivity_counts"] == [int((correct & survives).sum()), len(selected)]
    assert record["specificity_counts"] == [int((~correct & ~survives).sum()), int((~survives).sum())]
    assert model.data_refresh_steps == 5


def test_scar_run_selects_every_epoch_and_resumes_exactly(tmp_path, pretrained):
    config = scar_config(tmp_path / "a", pretrained)
    metrics = training.run(config)
    content = json.loads((tmp_path / "a" / "scar_selection.json").read_text())
    assert [r["step"] for r in content["epochs"]] == [0, 5, 10]
    assert len({r["num_selected"] for r in content["epochs"]}) == 1  # frozen theta~ and FGSM: same set
    assert content["pretrained_test_error"] == json.loads((pretrained / "metrics.json").read_text())["test_error"]
    assert (tmp_path / "a" / "scar_selection.csv").exists() and (tmp_path / "a" / "scar_table.md").exists()
    assert set(metrics["loss_terms"]) == {"loss_nll", "loss_vat", "loss_entmin", "loss"}

    interrupted = training.run(config.replace(workdir=str(tmp_path / "b")), stop_after=7)
    assert interrupted["interrupted"]
    resumed = training.run(config.replace(workdir=str(tmp_path / "b")))
    assert resumed["test_error"] == metrics["test_error"] and resumed["loss_terms"] == metrics["loss_terms"]
    model_a, model_b = runs.restore_model(str(tmp_path / "a"))[0], runs.restore_model(str(tmp_path / "b"))[0]
    for a, b in zip(model_a.variables, model_b.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    stage1 = runs.restore_model(str(pretrained))[0]
    for a, b in zip(model_a.pretrained.weights, stage1.classifier.weights):  # theta~ stays frozen
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("params,changes,message", [
    ({"pretrained_workdir": None}, {}, "--pretrained_workdir is required"),
    ({"scar_base": "scar"}, {}, "--scar_base='scar' must be one of"),
    ({"scar_attack": "cw"}, {}, "--scar_attack must be one of fgsm, fgm, pgd_linf, pgd_l2"),
    ({"scar_eps": -1.0}, {}, "--scar_eps must be >= 0"),
    ({}, {"mlp_widths": (32, 8)}, r"was trained with --mlp_widths=\(16, 8\), this run has --mlp_widths=\(32, 8\)"),
])
def test_bad_scar_input_fails_before_any_work(tmp_path, pretrained, params, changes, message):
    config = scar_config(tmp_path / "scar", pretrained, **params).replace(**changes)
    with pytest.raises(ConfigError, match=message):
        training.run(config)
    assert not (tmp_path / "scar").exists()


def test_scar_flags_are_generated_but_resolved_base_params_are_not():
    fields = methods.param_fields()
    assert {"scar_base", "pretrained_workdir", "scar_eps", "scar_attack"} <= set(fields)
    assert "base_params" not in fields
