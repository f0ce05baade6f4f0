"""Figures of a trained model as PNG files (matplotlib's Agg backend, no pyplot state): the
training curves (loss and validation RMSE per epoch) and a 2-D PCA map of the item
embeddings (the output layer's kernel columns) with the most-rated titles labelled."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRAINING_CURVES = "training_curves.png"
ITEM_MAP = "item_map.png"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def write_training_curves(
    history: dict[str, list[float]], path: Path | str, *, best_epoch: int | None = None
) -> Path:
    """Loss per epoch (left) and validation RMSE per epoch (right, when recorded); the epoch
    whose weights were kept is marked."""
    figure = _figure(10, 4)
    loss_axes, rmse_axes = figure.subplots(1, 2)
    for axes, key, label in (
        (loss_axes, "loss", "training loss (masked MSE + L2)"),
        (rmse_axes, "val_rmse", "validation RMSE (stars)"),
    ):
        values = history.get(key) or []
        epochs = np.arange(1, len(values) + 1)
        if len(values):
            axes.plot(epochs, values, marker="o", markersize=3, color="#4878a8")
        else:
            axes.text(0.5, 0.5, f"no {key} recorded", ha="center", va="center")
        if best_epoch:
            axes.axvline(best_epoch, color="#c44e52", linestyle="--", label=f"kept: {best_epoch}")
            axes.legend()
        axes.set_xlabel("epoch")
        axes.set_title(label, fontsize=10)
    return _save(figure, path)


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) vectors → ((n, 2) coordinates on the first two principal components, (2,)
    share of the variance each explains). Signs follow the SVD (arbitrary but fixed)."""
    centered = np.asarray(vectors, dtype=np.float64)
    centered = centered - centered.mean(axis=0)
    _, singular, components = np.linalg.svd(centered, full_matrices=False)
    variance = singular**2
    share = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    return centered @ components[:2].T, share


def write_item_map(
    embeddings: np.ndarray,
    titles: list[str],
    counts: np.ndarray,
    path: Path | str,
    *,
    labelled: int = 20,
) -> Path:
    """Every item on the first two principal components of its embedding, dot size by its
    number of ratings; the `labelled` most-rated items named."""
    coordinates, share = pca_2d(embeddings)
    counts = np.asarray(counts, dtype=np.float64)
    figure = _figure(11, 8.5)
    axes = figure.subplots()
    sizes = 4 + 40 * counts / max(counts.max(), 1)
    axes.scatter(coordinates[:, 0], coordinates[:, 1], s=sizes, alpha=0.35, color="#4878a8")
    for j in np.argsort(-counts, kind="stable")[:labelled]:
        axes.scatter(*coordinates[j], s=sizes[j], color="#c44e52")
        axes.annotate(
            titles[j], coordinates[j], fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    axes.set_xlabel(f"PC 1 ({share[0]:.0%} of the variance)")
    axes.set_ylabel(f"PC 2 ({share[1]:.0%} of the variance)")
    axes.set_title(
        f"Item embeddings (output-layer kernel columns; item codes for the item kind) of "
        f"{len(titles)} items; "
        f"the {min(labelled, len(titles))} most rated named",
        fontsize=10,
    )
    return _save(figure, path)
