"""``curves.png`` of a training run: every loss term and validation metric against steps."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402

from ..data.io import atomic_path  # noqa: E402

CURVES_FILE = "curves.png"
SKIPPED = ("split", "epoch", "step")  # bookkeeping, not curves
COUNTS = "samples."  # per-task sample counts: logged, not drawn
SPEED = "steps_per_s"  # training steps per second of each log line's window: a panel of its own
PANEL_COLUMNS = 3


def curve_panels(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{panel title: {key: [(step, value), ...]}}``: training terms grouped by their prefix
    (``det.heatmap`` under "train: det"), the total loss and learning rate, then the
    validation metrics grouped by task (``det_ap`` under "val: det")."""
    panels: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        split, step = record.get("split"), record.get("step")
        if split not in ("train", "val") or step is None:
            continue
        for key, value in record.items():
            if key in SKIPPED or key.startswith(COUNTS) or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if not math.isfinite(value):
                continue
            if split == "train":
                group = key.split(".", 1)[0] if "." in key else {"lr": "lr", SPEED: "speed"}.get(key, "loss")
                panels[f"train: {group}"][key].append((int(step), float(value)))
            else:
                group = key.split("_", 1)[0] if "_" in key else key
                panels[f"val: {group}"][key].append((int(step), float(value)))
    order = sorted(panels, key=lambda title: (title.startswith("val"), title.endswith((": lr", ": speed")),
                                              title != "train: loss", title))
    return {title: dict(panels[title]) for title in order}


def plot_curves(records: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Draw :func:`curve_panels` of ``records`` (``metrics.jsonl`` lines) into ``path`` (PNG,
    written atomically); None when there is nothing to draw."""
    panels = curve_panels(records)
    if not panels:
        return None
    columns = min(PANEL_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    last = max(step for curves in panels.values() for points in curves.values() for step, _ in points)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.4 * rows), squeeze=False)
    for ax, (name, curves) in zip(axes.flat, panels.items()):
        for key, points in curves.items():
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 12 else None, markersize=3, linewidth=1.2, label=key)
        positive = all(v > 0 for points in curves.values() for _, v in points)
        if name.startswith("train") and not name.endswith((": lr", ": speed")) and positive:
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_xlim(0, max(1, last) * 1.03)  # one step axis for all panels
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return Path(path)
