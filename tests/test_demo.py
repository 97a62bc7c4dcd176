"""The README's first command, shrunk: the demo runs end to end and writes its results."""

import json
from pathlib import Path

from deltalearn.cli import main
from deltalearn.demo import mcn_demo_config


def test_demo_end_to_end(tmp_path: Path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--minutes", "1", "--images", "16", "--val-images", "4",
                 "--mae-minutes", "0.2", "--mae-images", "64"]) == 0
    metrics = json.loads((out / "mcn_metrics.json").read_text())
    assert {"det_ap", "det_ap50", "pose_ap", "pose_ap50", "seg_iou", "seg_miou"} <= set(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("det_ap", "pose_ap", "seg_iou"))
    assert (out / "runs" / "mcn_seg_det_pose" / "config.yaml").is_file()
    assert len(list((out / "mcn_predictions").glob("*.png"))) == 4
    scores = json.loads((out / "mae_segmentation.json").read_text())
    assert 0.0 <= scores["iou"] <= 1.0 and {"center_prior", "grabcut", "ncut"} <= set(scores["baselines"])
    assert len(list((out / "mae_segments" / "figures").glob("*.png"))) == 4
    printed = capsys.readouterr().out
    assert "seg IoU" in printed and "demo done" in printed


def test_a_longer_demo_budget_gets_more_epochs():
    """The clock ends the demo's run: 12 epochs fit 10 minutes on a fast CPU, 30 minutes 36, and the
    cap is 4 times that, so that the budget, not the cap, rules on CPUs; the schedule follows the clock."""
    short, default, long = (mcn_demo_config(m, seed=0).train for m in (1, 10, 30))
    assert (short.epochs, default.epochs, long.epochs) == (48, 48, 144)
    assert default.schedule_by_clock and default.max_minutes == 10
    assert (short.max_minutes, long.max_minutes) == (1, 30)
