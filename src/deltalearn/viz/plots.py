"""Report figures: precision-recall curves from pycocotools' own arrays, a confusion matrix."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..data.io import atomic_path  # noqa: E402

PANEL_COLUMNS = 3
CURVE_IOUS = (0.5, 0.75)  # drawn one by one; the mean over all thresholds is drawn too


def precision_recall(precision: np.ndarray, recall_thresholds: Sequence[float], iou_thresholds: Sequence[float],
                     category: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """``{curve name: (recall, precision, AP)}`` from pycocotools' ``eval["precision"]``
    [T, R, K, A, M], area "all" (A = 0) and the largest detection limit (M = -1).

    ``category``: the index k of one category, None for the mean over categories. Entries
    of -1 (no ground truth) are left out, as pycocotools leaves them out of AP; a curve with
    none left is not returned. AP is the mean precision over the recall thresholds, which
    is exactly how pycocotools' summary computes it.
    """
    recall = np.asarray(recall_thresholds, dtype=float)
    table = np.asarray(precision, dtype=float)[:, :, :, 0, -1]  # [T, R, K]
    table = table if category is None else table[:, :, category:category + 1]
    table = np.where(table < 0, np.nan, table)

    def curve(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:  # rows [t, R, K]
        if np.isnan(rows).all():
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a category without ground truth: all NaN
            per_recall = np.nanmean(rows, axis=(0, 2))
        return recall, per_recall, float(np.nanmean(rows))

    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    thresholds = [round(float(t), 2) for t in iou_thresholds]
    for iou in CURVE_IOUS:
        if iou in thresholds:
            found = curve(table[thresholds.index(iou)][None])
            if found is not None:
                curves[f"IoU {iou:.2f}"] = found
    found = curve(table)
    if found is not None:
        curves[f"IoU {thresholds[0]:.2f}:{thresholds[-1]:.2f}"] = found
    return curves


def plot_precision_recall(precision: np.ndarray, recall_thresholds: Sequence[float],
                          iou_thresholds: Sequence[float], category_names: Sequence[str], path: str | Path,
                          title: str = "", similarity: str = "IoU") -> Path | None:
    """One panel per category (the mean over them first when there are several) with
    :func:`precision_recall` curves, written to ``path`` (PNG, atomically); None when no
    category has ground truth. ``similarity``: the name of the threshold (OKS for keypoints)."""
    panels: list[tuple[str, dict]] = []
    if len(category_names) > 1:
        panels.append(("all categories", precision_recall(precision, recall_thresholds, iou_thresholds)))
    for k, name in enumerate(category_names):
        panels.append((name, precision_recall(precision, recall_thresholds, iou_thresholds, k)))
    panels = [(name, curves) for name, curves in panels if curves]
    if not panels:
        return None
    columns = min(PANEL_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.8 * rows), squeeze=False)
    for ax, (name, curves) in zip(axes.flat, panels):
        for label, (recall, values, ap) in curves.items():
            ax.plot(recall, values, linewidth=1.4, label=f"{label.replace('IoU', similarity)}: AP {100 * ap:.1f}")
        ax.set_title(name)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """The pixel confusion matrix ``matrix[target, prediction]`` as a heat map, each row
    normalised (so the diagonal is each class's recall), its cells labelled with the share
    and the pixel count; written to ``path`` (PNG, atomically)."""
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    side = max(3.5, 0.9 * len(class_names) + 2)
    figure, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            colour = "white" if shares[i, j] > 0.6 else "black"
            ax.text(j, i, f"{100 * shares[i, j]:.1f}%\n{_count(counts[i, j])}", ha="center", va="center",
                    fontsize=7, color=colour)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the ground-truth row")
    ax.set_title(title or "segmentation: pixels")
    figure.tight_layout()
    return _save(figure, path)


def _count(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{int(value)}"


def _save(figure, path: str | Path) -> Path:  # noqa: ANN001 (a matplotlib Figure)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return Path(path)


def plot_curves_xy(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path,
                   xlabel: str = "recall", ylabel: str = "precision", title: str = "") -> Path:
    """One line per name of ``curves`` ``{name: (x, y)}`` in one panel (a curve of a single
    point, e.g. a binary method's, is drawn as a marker)."""
    figure, ax = plt.subplots(figsize=(6, 4.6))
    for name, (x, y) in curves.items():
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        distinct = len({(round(a, 3), round(b, 3)) for a, b in zip(x, y)})
        ax.plot(x, y, linewidth=1.4, marker="o" if distinct <= 3 else None, markersize=5, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    if title:
        ax.set_title(title)
    figure.tight_layout()
    return _save(figure, path)


def plot_distributions(values: dict[str, Sequence[float]], path: str | Path, ylabel: str, title: str = "") -> Path:
    """A box plot per name of ``values`` (its points drawn over it) with the mean marked."""
    names = list(values)
    figure, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names) + 2), 4.2))
    ax.boxplot([list(values[n]) for n in names], showmeans=True, widths=0.6)
    for i, name in enumerate(names, 1):
        points = np.asarray(values[name], dtype=float)
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(points))
        ax.scatter(i + jitter, points, s=6, alpha=0.35, color="tab:gray")
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title)
    figure.tight_layout()
    return _save(figure, path)


def plot_mask_grid(rows: Sequence[tuple[str, np.ndarray, np.ndarray, dict[str, tuple[np.ndarray, float]]]],
                   path: str | Path, title: str = "") -> Path:
    """Images side by side: per row ``(name, image [H, W, 3] uint8, truth [H, W] bool,
    {method: (mask [H, W] bool, IoU)})``, the image, its ground truth, then each method's
    mask over the image with its IoU."""
    methods = list(rows[0][3]) if rows else []
    columns = 2 + len(methods)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.9 * columns, 2.3 * len(rows) + 0.5), squeeze=False)
    for r, (name, image, truth, masks) in enumerate(rows):
        cells = [("image", image), ("ground truth", _overlay(image, truth, (40, 200, 40)))]
        cells += [(f"{method}\nIoU {iou:.2f}", _overlay(image, mask, (230, 60, 60))) for method, (mask, iou) in masks.items()]
        for c, (label, picture) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label if r == 0 or c >= 2 else "", fontsize=7)
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def _overlay(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float = 0.5) -> np.ndarray:
    out = image.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour, dtype=np.float32)
    return out.clip(0, 255).astype(np.uint8)
