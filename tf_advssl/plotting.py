"""Pictures written into run directories (matplotlib, headless)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def _grid(points, resolution=200, margin=0.3):
    low, high = points.min(axis=0) - margin, points.max(axis=0) + margin
    xs, ys = np.meshgrid(np.linspace(low[0], high[0], resolution), np.linspace(low[1], high[1], resolution))
    return xs, ys, np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def decision_boundary_figure(panels, path: str, resolution: int = 200):
    """One panel per (title, model, data) of a 2-D dataset: the predicted class
    regions, the p=0.5 contour, unlabeled (grey), test (small, by class) and labeled
    (large, by class) points. Saves a PNG to ``path``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5), squeeze=False)
    for ax, (title, model, data) in zip(axes[0], panels):
        xs, ys, grid = _grid(np.concatenate([data.x_train, data.x_test]), resolution)
        logits = model(data.preprocessor(tf.constant(grid)), training=False)
        probs = tf.nn.softmax(tf.cast(logits, tf.float32)).numpy()
        predicted = probs.argmax(axis=1).reshape(xs.shape)
        ax.contourf(xs, ys, predicted, alpha=0.25, cmap="coolwarm", levels=np.arange(data.spec.num_classes + 1) - 0.5)
        if data.spec.num_classes == 2:
            ax.contour(xs, ys, probs[:, 1].reshape(xs.shape), levels=[0.5], colors="k", linewidths=1)
        ax.scatter(data.x_train[:, 0], data.x_train[:, 1], s=3, c="0.6", label="unlabeled")
        ax.scatter(data.x_test[:, 0], data.x_test[:, 1], s=2, c=data.y_test, cmap="coolwarm", alpha=0.5)
        labeled = data.labeled_indices
        ax.scatter(data.x_train[labeled, 0], data.x_train[labeled, 1], s=80, c=data.y_train[labeled],
                   cmap="coolwarm", edgecolors="k", label="labeled")
        ax.set_title(title)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def interpolation_path_figure(result: dict, path: str):
    """Error (%) by lam along real-real and real-adversarial interpolation paths
    (``analysis.interpolation_path_errors``). Saves a PNG to ``path``."""
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(result["lambda"], result["real_real"], "o-", label="real-real paths")
    ax.plot(result["lambda"], result["real_adversarial"], "s-", label="real-adversarial paths")
    ax.set_xlabel("lambda (weight of the real end x_i)")
    ax.set_ylabel("error rate (%)")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _displayable(image):
    image = np.asarray(image, np.float32)
    low, high = image.min(), image.max()
    image = (image - low) / (high - low + 1e-8)
    return image[..., 0] if image.shape[-1] == 1 else image


def generated_examples_figure(originals, generated, path: str, max_examples: int = 10):
    """Originals and their generated adversarial examples.

    Images (n, H, W, C): a grid with originals in the top row and generated
    examples below (each min-max scaled for display).  Vectors (n, 2): a
    scatter with an arrow from each original to its generated point.
    Saves a PNG to ``path``."""
    originals, generated = np.asarray(originals), np.asarray(generated)
    if originals.ndim == 2:
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(originals[:, 0], originals[:, 1], s=6, c="tab:blue", label="original")
        ax.scatter(generated[:, 0], generated[:, 1], s=6, c="tab:red", label="generated")
        for a, b in zip(originals[:max_examples * 10], generated[:max_examples * 10]):
            ax.annotate("", xy=b[:2], xytext=a[:2], arrowprops=dict(arrowstyle="->", color="0.5", lw=0.5))
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=8)
    else:
        n = min(max_examples, len(originals))
        fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.6), squeeze=False)
        for k in range(n):
            for row, images in enumerate((originals, generated)):
                axes[row, k].imshow(_displayable(images[k]), cmap="gray")
                axes[row, k].axis("off")
        axes[0, 0].set_title("original", fontsize=8, loc="left")
        axes[1, 0].set_title("generated", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sample_panels_figure(panels, path: str, columns: int = 10):
    """Panels side by side, one per (title, samples, labels) of a generative model.

    Images (n, H, W, C) in model space are tiled ``columns`` per row, each panel
    min-max scaled to [0, 1] for display.  Vectors (n, D) are scattered by their
    first two features, coloured by ``labels`` (None: one colour), all panels on
    the same axes limits.  Saves a PNG to ``path``."""
    panels = [(title, np.asarray(samples, np.float32), labels) for title, samples, labels in panels]
    is_image = panels[0][1].ndim == 4
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), squeeze=False)
    if not is_image:
        points = np.concatenate([samples[:, :2] for _, samples, _ in panels])
        low, high = points.min(axis=0), points.max(axis=0)
        margin = 0.05 * (high - low + 1e-8)
    for ax, (title, samples, labels) in zip(axes[0], panels):
        if is_image:
            num_rows = -(-len(samples) // columns)
            height, width, channels = samples.shape[1:]
            canvas = np.ones((num_rows * (height + 1), columns * (width + 1), channels), np.float32)
            scaled = (samples - samples.min()) / (samples.max() - samples.min() + 1e-8)
            for k, image in enumerate(scaled):
                row, col = divmod(k, columns)
                canvas[row * (height + 1):row * (height + 1) + height,
                       col * (width + 1):col * (width + 1) + width] = image
            ax.imshow(canvas[..., 0] if channels == 1 else canvas, cmap="gray", vmin=0.0, vmax=1.0)
            ax.axis("off")
        else:
            ax.scatter(samples[:, 0], samples[:, 1], s=4, c=labels if labels is not None else "tab:blue",
                       cmap="tab10" if labels is not None else None, vmin=0, vmax=9)
            ax.set_xlim(low[0] - margin[0], high[0] + margin[0])
            ax.set_ylim(low[1] - margin[1], high[1] + margin[1])
            ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def robustness_figure(results, path: str):
    """Error rate (%) against epsilon, one colour per run (``robustness.evaluate`` results):
    white-box solid, black-box (transfer) dashed; the clean error is the point at eps = 0.
    Saves a PNG to ``path``."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for k, result in enumerate(results):
        color = f"C{k % 10}"
        eps = [0.0] + list(result["eps"])
        ax.plot(eps, [result["clean_error"]] + list(result["white_box"]["error"]), "o-", color=color,
                label=f"{result['name']} (white-box)")
        if result.get("black_box"):
            ax.plot(eps, [result["clean_error"]] + list(result["black_box"]["error"]), "s--", color=color,
                    label=f"{result['name']} (black-box)")
    first = results[0]
    norm = "L-inf" if first["attack"] in ("fgsm", "pgd_linf") else "L2"
    ax.set_xlabel(f"eps ({norm}, raw input space)")
    ax.set_ylabel("error rate under attack (%)")
    ax.set_title(f"{first['attack']} on {first['dataset']}", fontsize=10)
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def adversarial_grid_figure(rows, path: str, predictions=None):
    """Original / adversarial image grid: one row per (title, images (n, H, W, C)), one
    column per example; each image min-max scaled for display.  ``predictions``: optional
    list (one per row) of predicted classes (n,), written above each image.
    Saves a PNG to ``path``."""
    n = min(len(images) for _, images in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n + 1.6, 1.25 * len(rows)), squeeze=False)
    for r, (title, images) in enumerate(rows):
        images = np.asarray(images, np.float32)
        for k in range(n):
            ax = axes[r, k]
            ax.imshow(_displayable(images[k]), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if predictions is not None and predictions[r] is not None:
                ax.set_title(str(int(predictions[r][k])), fontsize=7, pad=1)
        axes[r, 0].set_ylabel(title, fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def interpolation_paths_figure(panels, path: str):
    """Interpolation-path error curves of several runs on one axes: one colour per
    (name, result of ``analysis.interpolation_path_errors``), real-real solid,
    real-adversarial dashed. Saves a PNG to ``path``."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k, (name, result) in enumerate(panels):
        color = f"C{k % 10}"
        ax.plot(result["lambda"], result["real_real"], "o-", color=color, label=f"{name}: real-real")
        ax.plot(result["lambda"], result["real_adversarial"], "s--", color=color,
                label=f"{name}: real-adversarial")
    ax.set_xlabel("lambda (weight of the real end x_i)")
    ax.set_ylabel("error rate (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
