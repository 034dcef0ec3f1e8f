"""Figures: accuracy-matrix heatmaps and metric-against-parameter curves (matplotlib, Agg)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def accuracy_heatmaps(acc: list[list[float]], val: list[list[float]]):
    """Test and validation accuracy matrices side by side (row = after task j, col = task i)."""
    fig, axes = plt.subplots(1, 2, figsize=(4 + 0.9 * len(acc[0]) * 2, 1.5 + 0.6 * len(acc)))
    for ax, matrix, title in zip(axes, (acc, val), ("test", "validation"), strict=True):
        data = np.array(matrix, dtype=float)
        im = ax.imshow(data, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_title(f"{title} accuracy (%)")
        ax.set_xlabel("task i")
        ax.set_ylabel("after task j")
        ax.set_xticks(range(data.shape[1]), [str(i + 1) for i in range(data.shape[1])])
        ax.set_yticks(range(data.shape[0]), ["init", *[str(j) for j in range(1, data.shape[0])]])
        for (j, i), v in np.ndenumerate(data):
            ax.text(i, j, f"{v:.0f}", ha="center", va="center", color="w" if v < 60 else "k", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.8)
    return fig
