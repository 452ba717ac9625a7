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
