"""Attacks in raw input space against closed forms on linear models, against the
adversarial-robustness-toolbox, and bin/evaluate.py end to end."""
import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_advssl import data as data_lib
from tf_advssl import robustness, runs, training
from tf_advssl.config import Config, ConfigError
from tf_advssl.robustness import EvaluationConfig

from linear_models import linear_classifier, softmax  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def raw_linear(weights, bias, scale=1.0 / 255.0):
    """Logits of raw pixel values: a linear model on scale * x (the run's preprocessor)."""
    model = linear_classifier(weights, bias)
    preprocessor = data_lib.Preprocessor(scale=scale, input_shape=(weights.shape[0],))
    return lambda x: model(preprocessor(x)), model


def ce_input_gradient(weights, bias, x, labels, scale):
    """d/dx_raw of sum_n CE(labels_n, (scale x_n) W + b)."""
    p = softmax(scale * x @ weights + bias)
    return scale * (p - np.eye(weights.shape[1])[labels]) @ weights.T


def test_fgsm_fgm_in_raw_space_match_hand_worked_linear_case_with_clipping():
    rng = np.random.RandomState(0)
    weights, bias = rng.normal(size=(6, 3)), rng.normal(size=3)
    x = rng.uniform(0, 255, size=(8, 6)).astype(np.float32)
    x[:, 0], x[:, 1] = 0.0, 255.0  # at the bounds: a step outward must be clipped
    y = rng.randint(0, 3, size=8)
    logits_fn, _ = raw_linear(weights, bias)
    grad = ce_input_gradient(weights, bias, x, y, 1 / 255)
    bounds = (0.0, 255.0)
    fgsm = robustness.attack(logits_fn, x, y, 20.0, EvaluationConfig(attack="fgsm"), bounds)
    np.testing.assert_allclose(fgsm, np.clip(x + 20.0 * np.sign(grad), 0, 255), atol=1e-3)
    fgm = robustness.attack(logits_fn, x, y, 30.0, EvaluationConfig(attack="fgm"), bounds)
    expected = np.clip(x + 30.0 * grad / np.linalg.norm(grad, axis=1, keepdims=True), 0, 255)
    np.testing.assert_allclose(fgm, expected, atol=1e-3)
    assert fgsm.min() >= 0.0 and fgsm.max() <= 255.0


def test_error_under_fgsm_equals_margin_condition_for_two_class_linear_model():
    """Two classes: FGSM lowers the margin z_y - z_other by exactly eps ||w_y - w_other||_1,
    so an example stays correct iff its margin exceeds that."""
    rng = np.random.RandomState(1)
    weights, bias = rng.normal(size=(5, 2)), rng.normal(size=2)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = rng.randint(0, 2, size=400)
    logits_fn, _ = raw_linear(weights, bias, scale=1.0)
    eps = 0.3
    z = x @ weights + bias
    margin = z[np.arange(400), y] - z[np.arange(400), 1 - y]
    threshold = eps * np.abs(weights[:, 1] - weights[:, 0]).sum()
    keep = np.abs(margin - threshold) > 1e-3  # no ties within float32 noise
    x_adv = robustness.attack(logits_fn, x, y, eps, EvaluationConfig(attack="fgsm"), (None, None))
    predicted = robustness.predict(logits_fn, x_adv, 128)
    np.testing.assert_array_equal((predicted == y)[keep], (margin > threshold)[keep])
    assert 0.2 < np.mean(margin > threshold) < 0.8  # the test separates something


def test_targeted_attacks_move_toward_the_target():
    rng = np.random.RandomState(2)
    weights, bias = rng.normal(size=(6, 4)), rng.normal(size=4)
    x = rng.uniform(50, 200, size=(32, 6)).astype(np.float32)
    logits_fn, _ = raw_linear(weights, bias)
    y = robustness.predict(logits_fn, x, 32)
    target = robustness.attack_targets("next", y, 4)
    np.testing.assert_array_equal(target, (y + 1) % 4)
    assert np.all(robustness.attack_targets("random", y, 4, seed=3) != y)

    def target_margin(v):  # z_target - max_{k != target} z_k
        z = logits_fn(tf.constant(v)).numpy()
        z_target = z[np.arange(len(z)), target]
        z[np.arange(len(z)), target] = -np.inf
        return z_target - z.max(axis=1)

    config = EvaluationConfig(attack="fgsm", target="next")
    small = robustness.attack(logits_fn, x, target, 2.0, config, (0.0, 255.0))
    grad = ce_input_gradient(weights, bias, x, target, 1 / 255)
    np.testing.assert_allclose(small, np.clip(x - 2.0 * np.sign(grad), 0, 255), atol=1e-3)  # descends CE(target)
    assert np.all(target_margin(small) > target_margin(x))
    strong = robustness.attack(logits_fn, x, target, 2000.0,
                               EvaluationConfig(attack="pgd_l2", target="next", pgd_steps=40), (-1e6, 1e6))
    np.testing.assert_array_equal(robustness.predict(logits_fn, strong, 32), target)
    assert np.all(np.linalg.norm(strong - x, axis=1) <= 2000.0 * (1 + 1e-5))


def art_model_and_estimator():
    """The small raw-pixel model of the ART cross-checks and an ART estimator of it on [0, 255]."""
    from art.estimators.classification import TensorFlowV2Classifier

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(3)])
    estimator = TensorFlowV2Classifier(model=model, nb_classes=3, input_shape=(6, 6, 1), clip_values=(0.0, 255.0),
                                       loss_object=keras.losses.CategoricalCrossentropy(from_logits=True))
    return model, estimator


def test_same_adversarial_examples_as_adversarial_robustness_toolbox():
    art = pytest.importorskip("art")
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    model, estimator = art_model_and_estimator()
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 255, size=(16, 6, 6, 1)).astype(np.float32)
    x[:, 0, :, 0], x[:, -1, :, 0] = 0.0, 255.0
    y = rng.randint(0, 3, size=16)
    logits_fn = lambda v: model(v)
    bounds = (0.0, 255.0)
    for norm, attack, eps in ((np.inf, "fgsm", 12.0), (2, "fgm", 150.0)):
        theirs = FastGradientMethod(estimator, norm=norm, eps=eps, batch_size=16).generate(x, y=y)
        ours = robustness.attack(logits_fn, x, y, eps, EvaluationConfig(attack=attack), bounds)
        np.testing.assert_allclose(ours, theirs, atol=1e-2, err_msg=attack)
    theirs = ProjectedGradientDescent(estimator, norm=np.inf, eps=16.0, eps_step=4.0, max_iter=6,
                                      num_random_init=0, batch_size=16, verbose=False).generate(x, y=y)
    ours = robustness.attack(logits_fn, x, y, 16.0, EvaluationConfig(
        attack="pgd_linf", pgd_steps=6, pgd_step_size=4.0, pgd_random_start=False), bounds)
    np.testing.assert_allclose(ours, theirs, atol=1e-2)
    targeted = FastGradientMethod(estimator, norm=np.inf, eps=12.0, targeted=True, batch_size=16).generate(
        x, y=(y + 1) % 3)
    ours = robustness.attack(logits_fn, x, (y + 1) % 3, 12.0, EvaluationConfig(attack="fgsm", target="next"), bounds)
    np.testing.assert_allclose(ours, targeted, atol=1e-2)
    assert np.abs(ours - x).max() > 1.0  # the attack moved something


def reference_pgd_l2(model, x, y, eps, step, steps, bounds, order):
    """Untargeted PGD-L2 without random start in numpy, from plain GradientTape gradients of the
    summed cross-entropy: x_t + step g / ||g||_2, then either ``order="project_then_clip"``
    (Madry et al.; cleverhans, torchattacks): x_{t+1} = clip(x + P(x_t + step g/||g|| - x)), or
    ``order="clip_then_project"`` (ART 1.20): x_{t+1} = x + P(clip(x_t + step g/||g||) - x);
    P: projection (rescaling) onto the L2 ball of radius eps, per example over all pixels."""
    axes = tuple(range(1, x.ndim))

    def ball(delta):
        norm = np.sqrt(np.sum(np.square(delta, dtype=np.float64), axis=axes, keepdims=True))
        return delta * np.minimum(1.0, eps / np.maximum(norm, 1e-12))

    x = x.astype(np.float64)
    x_t = x.copy()
    for _ in range(steps):
        v = tf.constant(x_t, tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(v)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(v)))
        g = tape.gradient(loss, v).numpy().astype(np.float64)
        z = x_t + step * g / np.sqrt(np.sum(np.square(g), axis=axes, keepdims=True))
        if order == "project_then_clip":
            x_t = np.clip(x + ball(z - x), *bounds)
        else:
            x_t = x + ball(np.clip(z, *bounds) - x)
    return x_t


@pytest.mark.parametrize("case", ["clipping_never_binds", "projection_never_binds", "both_bind"])
def test_pgd_l2_against_adversarial_robustness_toolbox(case):
    """PGD-L2 (no random start) against ART's ProjectedGradientDescent{TensorFlowV2,Numpy}, norm=2.

    Both take the same step, x_t + eps_step g / ||g||_2 (per example, over all pixels), but
    ours projects onto the eps-ball and then clips to [0, 255] (Madry et al. 2018; also
    cleverhans and torchattacks), while ART clips and then projects (``_apply_perturbation``
    clips, ``_projection`` rescales x_adv - x_init).  The two orders give the same iterate
    whenever at most one of the two constraints binds in a step, so:

    * clipping_never_binds: pixels in [100, 155] and eps + eps_step = 85 < 100, so no iterate
      or step can leave [0, 255]; the projection binds (4 steps of 25 > eps = 60, not
      converged, so the result still depends on the step length) -> the same examples;
    * projection_never_binds: eps = 1000 >= 6 steps x 60 (clipping only shortens steps), so
      the projection is the identity, while pixels at 0 and 255 make clipping bind -> the
      same examples;
    * both_bind: eps = 150 < 6 x 60 with pixels at the bounds: the orders differ (by ~14
      pixel values here), which is why the other attacks' cross-check has no PGD-L2 line.
      Each library is checked against a numpy reference of its own order, and the two
      references against each other.
    """
    pytest.importorskip("art")
    from art.attacks.evasion import ProjectedGradientDescentNumpy, ProjectedGradientDescentTensorFlowV2

    model, estimator = art_model_and_estimator()
    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, size=16)
    if case == "clipping_never_binds":
        x = rng.uniform(100, 155, size=(16, 6, 6, 1)).astype(np.float32)
        eps, step, steps = 60.0, 25.0, 4
    else:
        x = rng.uniform(0, 255, size=(16, 6, 6, 1)).astype(np.float32)
        x[:, 0, :, 0], x[:, -1, :, 0] = 0.0, 255.0
        eps, step, steps = (1000.0 if case == "projection_never_binds" else 150.0), 60.0, 6
    bounds = (0.0, 255.0)
    config = EvaluationConfig(attack="pgd_l2", pgd_steps=steps, pgd_step_size=step, pgd_random_start=False)
    ours = robustness.attack(lambda v: model(v), x, y, eps, config, bounds)
    theirs = {cls.__name__: cls(estimator, norm=2, eps=eps, eps_step=step, max_iter=steps, num_random_init=0,
                                batch_size=16, verbose=False).generate(x, y=y)
              for cls in (ProjectedGradientDescentTensorFlowV2, ProjectedGradientDescentNumpy)}
    madry = reference_pgd_l2(model, x, y, eps, step, steps, bounds, "project_then_clip")
    art_order = reference_pgd_l2(model, x, y, eps, step, steps, bounds, "clip_then_project")

    norms = np.sqrt(np.sum(np.square(ours - x), axis=(1, 2, 3)))
    assert np.all(norms <= eps * (1 + 1e-5)) and ours.min() >= 0.0 and ours.max() <= 255.0
    if case != "both_bind":
        for name, adv in theirs.items():
            np.testing.assert_allclose(ours, adv, atol=1e-2, err_msg=name)  # the cross-check proper
    np.testing.assert_allclose(ours, madry, atol=1e-2)  # our order and step, as documented
    for name, adv in theirs.items():
        np.testing.assert_allclose(adv, art_order, atol=1e-2, err_msg=name)  # ART's order, as read

    # Each case is what it claims to be.
    unclipped = robustness.attack(lambda v: model(v), x, y, eps, config, (None, None))
    if case == "clipping_never_binds":
        assert np.abs(unclipped - ours).max() < 1e-3
        np.testing.assert_allclose(norms, eps, rtol=1e-4)  # the projection binds for every example
    else:
        assert np.abs(unclipped - ours).max() > 10.0  # clipping binds
    if case == "projection_never_binds":
        assert norms.max() < 0.5 * eps
    if case == "both_bind":
        assert np.abs(madry - art_order).max() > 5.0  # the orders differ here: no direct cross-check
        for name, adv in theirs.items():
            assert np.abs(ours - adv).max() > 5.0, f"{name} now agrees: make both_bind a direct cross-check"
    fgm = robustness.attack(lambda v: model(v), x, y, eps, EvaluationConfig(attack="fgm"), bounds)
    assert np.abs(ours - fgm).max() > 0.5  # not just one FGM step (50 x the tolerance)


# ----- bin/evaluate.py ------------------------------------------------------------------

def tiny_run(workdir, method):
    return training.run(Config(method=method, workdir=str(workdir), train_steps=30, verbose=0,
                               num_train_synthetic=200, num_test_synthetic=100, unlabeled_batch_size=32,
                               mlp_widths=(16, 8), export=False, method_params={"vat_eps": 0.3}))


def evaluate_cli(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", "evaluate.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


def independent_fgm_error(workdir, eps):
    """White-box FGM error (%) on the test set recomputed with a plain GradientTape:
    x + eps g / ||g||_2, clipped to the per-feature range of the training set."""
    model, config, _, _ = runs.restore_model(str(workdir))
    data = data_lib.load(config)
    x, y = tf.constant(data.x_test), data.y_test
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x, training=False)))
    g = tape.gradient(loss, x).numpy()
    x_adv = np.clip(x.numpy() + eps * g / np.linalg.norm(g, axis=1, keepdims=True),
                    data.x_train.min(axis=0), data.x_train.max(axis=0))
    return 100.0 * np.mean(np.argmax(model(x_adv, training=False).numpy(), axis=1) != y)


def test_evaluate_cli_white_and_black_box_tables_and_json(tmp_path):
    vat, supervised = tmp_path / "vat", tmp_path / "supervised"
    metrics = {"vat": tiny_run(vat, "vat"), "supervised": tiny_run(supervised, "supervised")}
    out = tmp_path / "out"
    result = evaluate_cli(f"--workdir={vat},{supervised}", "--attack=fgm", "--eps=0,0.1,3",
                          f"--substitute_workdir={supervised}", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "White-box" in result.stdout and "Black-box" in result.stdout and "raw" in result.stdout
    assert "| vat |" in result.stdout and "| supervised |" in result.stdout

    for workdir, method in ((vat, "vat"), (supervised, "supervised")):
        content = json.loads((workdir / "robustness.json").read_text())
        fgm = content["attacks"]["fgm"]
        assert fgm["method"] == method and fgm["eps"] == [0.0, 0.1, 3.0] and fgm["num_examples"] == 100
        assert "raw" in fgm["eps_space"]
        assert fgm["clean_error"] == pytest.approx(metrics[method]["test_error"], abs=1e-3)
        white = fgm["white_box"]["error"]
        assert white[0] == pytest.approx(fgm["clean_error"])  # eps = 0 changes nothing
        assert white[1] == pytest.approx(independent_fgm_error(workdir, 0.1), abs=1e-6)
        assert fgm["black_box"]["substitute_workdir"] == str(supervised)
        assert (workdir / "robustness_fgm.png").exists()
    sup = json.loads((supervised / "robustness.json").read_text())["attacks"]["fgm"]
    assert sup["black_box"]["error"] == pytest.approx(sup["white_box"]["error"])  # substitute = itself
    assert (out / "robustness_fgm.png").exists() and (out / "robustness_fgm.md").exists()

    # A second attack is added to robustness.json; the first one is kept.
    robustness.evaluate(EvaluationConfig(workdirs=(str(vat),), attack="pgd_linf", eps=(0.2,), target="next",
                                         pgd_steps=3), verbose=False)
    attacks = json.loads((vat / "robustness.json").read_text())["attacks"]
    assert set(attacks) == {"fgm", "pgd_linf-targeted-next"}
    assert attacks["pgd_linf-targeted-next"]["white_box"]["target_success"] is not None

    bad = evaluate_cli(f"--workdir={vat}", "--attack=cw")
    assert bad.returncode == 2 and "--attack" in bad.stderr and "fgsm, fgm, pgd_linf, pgd_l2" in bad.stderr


@pytest.mark.parametrize("changes,message", [
    (dict(workdirs=()), "--workdir is required"),
    (dict(workdirs=("/nonexistent/run",)), "--workdir=/nonexistent/run holds no run"),
    (dict(attack="deepfool"), "--attack='deepfool' is not one of fgsm, fgm, pgd_linf, pgd_l2"),
    (dict(eps=(1.0, -2.0)), "--eps values must be finite and >= 0"),
    (dict(target="sideways"), "--target='sideways' must be one of none, next, random, least_likely"),
    (dict(pgd_steps=0), "--pgd_steps must be > 0"),
    (dict(substitute_workdir="/nonexistent/sub"), "--substitute_workdir=/nonexistent/sub holds no run"),
])
def test_bad_evaluation_flags_fail_before_any_work(tmp_path, monkeypatch, changes, message):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(Config().to_json())
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    (run_dir / "checkpoints" / "ckpt-1.index").write_text("")
    monkeypatch.setattr(robustness, "load_run", lambda *a: pytest.fail("loaded a model despite bad flags"))
    config = dataclasses.replace(EvaluationConfig(workdirs=(str(run_dir),)), **changes)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        robustness.evaluate(config, verbose=False)
