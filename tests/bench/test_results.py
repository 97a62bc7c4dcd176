"""Resumable benchmark result files: kept with their settings, refused with others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deltalearn.bench.results import resume_results, val_curve
from deltalearn.config import ConfigError


def test_results_resume_with_the_same_settings_and_refuse_others(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    settings = {"steps": 8000, "scene": "simple", "overrides": []}
    fresh = resume_results(path, settings)
    assert fresh["settings"] == settings and fresh["rows"] == {} and fresh["cpu"]
    fresh["rows"]["det"] = {"det_ap": 0.4}
    path.write_text(json.dumps(fresh))
    assert resume_results(path, dict(settings))["rows"] == {"det": {"det_ap": 0.4}}
    with pytest.raises(ConfigError, match=r"r.json: written by another configuration .*differs in scene, steps"):
        resume_results(path, {"steps": 4000, "scene": "cluttered", "overrides": []})
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="r.json: cannot resume from it"):
        resume_results(path, settings)
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="differs in settings"):
        resume_results(path, settings)


def test_val_curve_keeps_validations_and_their_task_metrics(tmp_path: Path) -> None:
    records = [{"split": "train", "step": 10, "loss": 3.0},
               {"split": "val", "epoch": 1, "step": 125, "det_ap": 0.1, "seg_iou": 0.5, "minutes": 2.0},
               {"split": "val", "epoch": 2, "step": 250, "det_ap": 0.2, "pose_ap": 0.05}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert val_curve(tmp_path) == [{"step": 125, "det_ap": 0.1, "seg_iou": 0.5},
                                   {"step": 250, "det_ap": 0.2, "pose_ap": 0.05}]
