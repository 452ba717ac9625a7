"""Pictures: decision boundaries of several runs (bin/plot.py), adversarial example grids
of image runs, robustness and interpolation-path curves."""
import json
import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from tf_advssl import analysis, figures, plotting, runs, training
from tf_advssl.config import Config, ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(workdir, **changes):
    values = dict(workdir=str(workdir), train_steps=4, verbose=0, num_train_synthetic=120, num_test_synthetic=60,
                  unlabeled_batch_size=16, batch_size=4, mlp_widths=(8,), export=False)
    values.update(changes)
    return Config(**values)


def width_and_height(path):
    image = matplotlib.image.imread(path)
    return image.shape[1], image.shape[0]


def min_max(image):
    """An image as it should be displayed: min-max scaled to [0, 1], channel axis dropped if single."""
    image = np.asarray(image, np.float64)
    image = (image - image.min()) / (image.max() - image.min() + 1e-8)
    return image[..., 0] if image.shape[-1] == 1 else image


def legend_texts(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def assert_curve_pairs(ax, labels):
    """The lines of ``ax`` are ``labels`` (also in the legend), in pairs of one run: solid then
    dashed, in one colour per run, different between the two runs."""
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == labels and legend_texts(ax) == labels
    assert [line.get_linestyle() for line in lines] == ["-", "--", "-", "--"]
    colors = [line.get_color() for line in lines]
    assert colors[0] == colors[1] != colors[2] == colors[3]
    return lines


def assert_image_grid(figure, rows, predictions):
    """The adversarial grid: one row of panels per (title, images) with the title as row label,
    one column per example showing that image (min-max scaled) and, where the row has
    predictions, the predicted class as the panel title."""
    n = min(len(images) for _, images in rows)
    assert len(figure.axes) == len(rows) * n
    grid = np.array(figure.axes, dtype=object).reshape(len(rows), n)
    for r, (title, images) in enumerate(rows):
        assert grid[r, 0].get_ylabel() == title
        for k in range(n):
            ax = grid[r, k]
            assert len(ax.images) == 1
            np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), min_max(images[k]), atol=1e-5)
            expected = "" if predictions[r] is None else str(int(predictions[r][k]))
            assert ax.get_title() == expected


def test_plot_cli_draws_one_decision_boundary_panel_per_run(tmp_path, saved_figures):
    for method in ("vat", "supervised"):
        training.run(tiny(tmp_path / method, method=method))
        (ax,) = saved_figures[tmp_path / method / "decision_boundary.png"].axes  # one panel per run
        assert ax.get_title().startswith(f"{method} (test error ") and ax.get_title().endswith(" %)")
        assert legend_texts(ax) == ["unlabeled", "labeled"]
        unlabeled, test, labeled = ax.collections[-3:]  # the three scatters, drawn after the contours
        assert [len(c.get_offsets()) for c in (unlabeled, test, labeled)] == [120, 60, 8]
    one = width_and_height(tmp_path / "vat" / "decision_boundary.png")  # written by training: one panel
    out = tmp_path / "both.png"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "plot.py"),
                             f"--workdir={tmp_path / 'vat'},{tmp_path / 'supervised'}", f"--out={out}"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str(out)
    two = width_and_height(out)
    assert two[1] == one[1] and two[0] == 2 * one[0]  # two panels side by side

    with pytest.raises(ConfigError, match="--kind='contour' is not one of"):
        figures.plot_runs([str(tmp_path / "vat")], "contour")
    with pytest.raises(ConfigError, match="no 'fgm' result in robustness.json"):
        figures.plot_runs([str(tmp_path / "vat")], "robustness")
    with pytest.raises(ConfigError, match="needs image datasets"):
        figures.plot_runs([str(tmp_path / "vat")], "adversarial_examples")
    paths = figures.plot_runs([str(tmp_path / "vat"), str(tmp_path / "supervised")], "interpolation_paths")
    assert os.path.isfile(paths[0])
    (ax,) = saved_figures[paths[0]].axes  # all runs on one axes: two curves per run, one colour per run
    lines = assert_curve_pairs(ax, [f"{run}: {path}" for run in ("vat", "supervised")
                                    for path in ("real-real", "real-adversarial")])
    for line in lines:
        np.testing.assert_allclose(line.get_xdata(), analysis.DEFAULT_LAMBDAS)
        assert np.all((np.asarray(line.get_ydata()) >= 0.0) & (np.asarray(line.get_ydata()) <= 100.0))
    assert ax.get_xlabel().startswith("lambda") and ax.get_ylabel() == "error rate (%)"
    with open(paths[1]) as f:  # the numbers of the curves, and the radius they were taken at
        records = json.load(f)
    assert paths[1] == os.path.splitext(paths[0])[0] + ".json"
    assert [r["name"] for r in records] == ["vat", "supervised"]
    assert records[1]["eps_model_space"] == 1.0  # supervised has no vat_eps
    for record, (real_real, real_adversarial) in zip(records, zip(lines[::2], lines[1::2])):
        np.testing.assert_allclose(record["real_real"], real_real.get_ydata())
        np.testing.assert_allclose(record["real_adversarial"], real_adversarial.get_ydata())
    same = figures.plot_runs([str(tmp_path / "supervised")] * 2, "interpolation_paths", str(tmp_path / "p.png"),
                             path_eps=0.25)
    with open(same[1]) as f:
        records = json.load(f)
    assert [r["eps_model_space"] for r in records] == [0.25, 0.25]
    assert [r["name"] for r in records] == ["supervised (supervised)"] * 2  # a method twice: its directory
    with pytest.raises(ConfigError, match="--path_eps must be > 0"):
        figures.plot_runs([str(tmp_path / "vat")], "interpolation_paths", path_eps=0.0)


@pytest.fixture(scope="module")
def image_npz(tmp_path_factory):
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, size=(48, 8, 8, 1)).astype(np.uint8)
    y = np.arange(48) % 2
    x[y == 1, :4] = 255  # a visible class signal
    path = tmp_path_factory.mktemp("npz") / "images.npz"
    np.savez(path, x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    return f"npz:{path}"


def test_image_run_writes_adversarial_grid_at_the_end_of_training(tmp_path, image_npz, saved_figures):
    training.run(tiny(tmp_path, method="xvat", dataset=image_npz, num_labeled=4, train_steps=2, network="mlp",
                      augment_translate=0, eval_every=2))
    assert os.path.isfile(tmp_path / "adversarial_grid.png")
    figure = saved_figures[tmp_path / "adversarial_grid.png"]
    assert len(figure.axes) == 5 * 8  # 5 rows (xVAT adds its mask and x * z) of 8 examples (adversarial_views)
    grid = np.array(figure.axes, dtype=object).reshape(5, 8)
    labels = [grid[r, 0].get_ylabel() for r in range(5)]
    assert labels[0] == "original" and labels[1].startswith("VAT") and labels[2].startswith("FGSM")
    assert labels[3:] == ["mask z\n(median)", "masked\nx * z"]
    assert all(len(ax.images) == 1 and ax.images[0].get_array().shape == (8, 8) for ax in figure.axes)
    x_train = np.load(image_npz[len("npz:"):])["x_train"]
    for k in range(8):  # the original row shows the first training images
        np.testing.assert_allclose(np.asarray(grid[0, k].images[0].get_array()), min_max(x_train[k]), atol=1e-5)
    for r in (0, 1, 2, 4):  # the predicted class above every row of inputs, none above the mask itself
        assert all(ax.get_title() in ("0", "1") for ax in grid[r])
    assert [ax.get_title() for ax in grid[3]] == [""] * 8


@pytest.mark.parametrize("method,row", [("xvat", "masked\nx * z"), ("advmixup", "real_adv mixture\n(lam 0.5)"),
                                        ("advgen", "generator\nG(x, z)"), ("vat", None)])
def test_adversarial_views_of_image_models(tmp_path, image_npz, saved_figures, method, row):
    from tf_advssl import data as data_lib

    config = training.validate(tiny(tmp_path, method=method, dataset=image_npz, num_labeled=4, network="mlp",
                                    augment_translate=0))
    data = data_lib.load(config)
    model = runs.build_model(config, data.spec, len(data.x_train))
    rows, predictions = analysis.adversarial_views(model, data, count=5)
    titles = [title for title, _ in rows]
    assert titles[0] == "original" and titles[1].startswith("VAT") and titles[2].startswith("FGSM")
    assert (row in titles) if row else len(titles) == 3
    x = dict(rows)["original"]
    np.testing.assert_allclose(x, data.x_train[:5] / 255.0, atol=1e-6)
    fgsm = dict(rows)[titles[2]] * 255.0  # back to raw pixels: within 25.5 of x and within [0, 255]
    assert np.all(np.abs(fgsm - data.x_train[:5]) <= 25.5 + 1e-3) and fgsm.min() >= -1e-3 and fgsm.max() <= 255.001
    assert np.abs(fgsm - data.x_train[:5]).max() > 20.0
    radius = config.method_params.get("vat_eps") or 2.0  # the method's vat_eps, else 2.0
    vat = dict(rows)[titles[1]]
    np.testing.assert_allclose(np.linalg.norm((vat - x).reshape(5, -1), axis=1), radius, rtol=1e-3)
    assert all(p is None or p.shape == (5,) for p in predictions)
    plotting.adversarial_grid_figure(rows, str(tmp_path / "grid.png"), predictions)
    assert os.path.isfile(tmp_path / "grid.png")
    assert_image_grid(saved_figures[tmp_path / "grid.png"], rows, predictions)  # len(rows) x 5 panels


def test_robustness_figure_from_results(tmp_path, saved_figures):
    result = {"name": "vat", "attack": "fgm", "dataset": "mnist", "eps": [1.0, 2.0], "clean_error": 2.0,
              "white_box": {"error": [10.0, 30.0]}, "black_box": {"error": [5.0, 8.0]}}
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "robustness.json").write_text(json.dumps({"attacks": {"fgm": dict(result, name=name)}}))
        (tmp_path / name / "config.json").write_text(Config().to_json())
    paths = figures.plot_runs([str(tmp_path / "a"), str(tmp_path / "b")], "robustness",
                               out=str(tmp_path / "curves.png"))
    assert paths == [str(tmp_path / "curves.png")] and os.path.isfile(paths[0])
    (ax,) = saved_figures[paths[0]].axes  # one axes: per run a white-box (solid) and a black-box (dashed) curve
    lines = assert_curve_pairs(ax, [f"{run} ({box})" for run in ("a", "b") for box in ("white-box", "black-box")])
    for line, errors in zip(lines, [[2.0, 10.0, 30.0], [2.0, 5.0, 8.0]] * 2):  # clean error at eps = 0
        np.testing.assert_allclose(line.get_xdata(), [0.0, 1.0, 2.0])
        np.testing.assert_allclose(line.get_ydata(), errors)
    assert ax.get_title() == "fgm on mnist" and ax.get_xlabel() == "eps (L2, raw input space)"
    assert ax.get_ylabel() == "error rate under attack (%)" and ax.get_ylim() == (0.0, 100.0)
