"""curves.png: loss terms and validation metrics grouped into panels, drawn from metrics.jsonl."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from deltalearn.engine.curves import curve_panels, plot_curves

RECORDS = [
    {"split": "train", "epoch": 1, "step": 10, "lr": 0.01, "loss": 5.0, "det.heatmap": 3.0, "det.size": 1.0,
     "seg.ce": 1.0, "samples.det": 16.0, "weight.det": 1.0, "steps_per_s": 3.5},
    {"split": "val", "epoch": 1, "step": 10, "det_ap": 0.1, "det_ap50": 0.3, "seg_iou": 0.4},
    {"split": "train", "epoch": 2, "step": 20, "lr": 0.005, "loss": 3.0, "det.heatmap": 2.0, "det.size": 0.5,
     "seg.ce": float("nan"), "samples.det": 16.0, "weight.det": 0.9},
    {"split": "val", "epoch": 2, "step": 20, "det_ap": 0.2, "det_ap50": 0.5, "seg_iou": 0.5},
]


def test_panels_group_terms_by_task_and_metrics_by_task() -> None:
    panels = curve_panels(RECORDS)
    assert list(panels) == ["train: loss", "train: det", "train: seg", "train: weight", "train: lr",
                            "train: speed", "val: det", "val: seg"]
    assert panels["train: speed"] == {"steps_per_s": [(10, 3.5)]} and "steps_per_s" not in panels["train: loss"]
    assert panels["train: det"] == {"det.heatmap": [(10, 3.0), (20, 2.0)], "det.size": [(10, 1.0), (20, 0.5)]}
    assert panels["train: seg"] == {"seg.ce": [(10, 1.0)]}  # the NaN is left out
    assert panels["val: det"]["det_ap50"] == [(10, 0.3), (20, 0.5)]
    assert not any(key.startswith("samples.") for curves in panels.values() for key in curves)


def test_plot_writes_a_png_and_nothing_for_no_records(tmp_path: Path) -> None:
    path = plot_curves(RECORDS, tmp_path / "curves.png", title="run")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 1000 and image.height > 500
    assert plot_curves([], tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary file left
