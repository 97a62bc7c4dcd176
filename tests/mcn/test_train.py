"""MCN end to end through the command line: train (metrics rise), eval, predict, bad input."""

import json
from pathlib import Path

import pytest
import torch

from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.engine.checkpoint import CheckpointError, read_weights, save_weights, weights_metadata
from deltalearn.engine.metrics_log import read_metrics
from deltalearn.mcn.weights import load_model

TINY = ["model.backbone=resnet18", "model.neck_channels=32", "model.head_channels=32", "data.image_size=96",
        "data.workers=0", "train.batch_size=8", "train.lr=3e-3", "train.warmup_epochs=0.2", "train.seed=0",
        "data.scale_range=[1.0,1.0]", "data.shift=0", "data.color_jitter=0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mcn")
    # every person labelled: at 96 px nearly all are below COCO's 32^2 keypoint area, and the
    # run must show pose learning
    assert main(["mcn", "synth", "--out", str(root / "set"), "--images", "8", "--size", "96", "--seed", "3",
                 "--workers", "1", "--keypoint-min-area", "0"]) == 0
    return root / "set"


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory) -> Path:
    """Overfit 8 images for 60 one-step epochs; validate on the same images at epochs 20, 40, 60."""
    out = tmp_path_factory.mktemp("runs") / "run"
    args = ["mcn", "train", "--data", str(data), "--val-data", str(data), "--out", str(out),
            *TINY, "train.epochs=60", "train.val_every=20", "train.best_metric=det_ap50"]
    assert main(args) == 0
    return out


def test_run_folder_and_metrics_rise(run: Path):
    for name in ("config.yaml", "last.safetensors", "best.safetensors", "last_state.pt", "metrics.jsonl"):
        assert (run / name).is_file(), name
    records = read_metrics(run)
    train = [r for r in records if r.get("split") == "train"]
    val = [r for r in records if r.get("split") == "val"]
    assert {"det.heatmap", "seg.ce", "pose.heatmap", "pose.displacement", "loss"} <= set(train[0])
    assert train[-1]["loss"] < 0.7 * train[0]["loss"]
    assert [r["epoch"] for r in val] == [20, 40, 60]
    first, last = val[0], val[-1]
    assert last["det_ap50"] > max(0.3, first["det_ap50"] + 0.05)
    assert last["pose_ap50"] > first["pose_ap50"]
    assert last["seg_miou"] > first["seg_miou"]


def test_logs_how_many_samples_each_task_learned_from(run: Path):
    train = [r for r in read_metrics(run) if r.get("split") == "train"]
    assert all(r["samples.det"] == r["samples.seg"] == r["samples.pose"] == 8.0 for r in train)  # one source, all labelled


def test_eval_writes_contract_keys(run: Path, data: Path, tmp_path: Path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["mcn", "eval", "--weights", str(run), "--data", str(data), "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"det_ap", "det_ap50", "pose_ap", "pose_ap50", "seg_iou", "seg_miou"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert "det AP" in capsys.readouterr().out


def test_eval_report_draws_curves_matrix_and_gallery(run: Path, data: Path, tmp_path: Path, capsys):
    report = tmp_path / "report"
    assert main(["mcn", "eval", "--weights", str(run), "--data", str(data), "--report", str(report),
                 "--gallery", "2"]) == 0
    text = (report / "report.md").read_text()
    for picture in ("pr_det.png", "pr_pose.png", "confusion.png", "gallery/worst_01.png", "gallery/best_02.png"):
        assert (report / picture).stat().st_size > 1000, picture
        assert f"({picture})" in text, picture
    assert "## Boxes" in text and "## Keypoints" in text and "## Segmentation" in text and "### Worst 2" in text
    numbers = json.loads((report / "report.json").read_text())
    assert len(numbers["per_image"]) == 8
    scores = [entry["score"] for entry in numbers["per_image"]]
    assert all(0.0 <= s <= 1.0 for s in scores) and {"det_f1", "pose_f1", "seg_miou"} <= set(numbers["per_image"][0])
    worst = sorted(numbers["per_image"], key=lambda e: (e["score"], e["image_id"]))[0]
    assert worst["file_name"] in text.split("### Worst 2")[1].split("### Best")[0]  # the worst image heads the gallery
    # the report's AP per category is read from the same precision array as the summary
    ap = float(text.split("## Boxes")[1].split("| **mean** | ")[1].split(" |")[0])
    assert ap == pytest.approx(100 * numbers["metrics"]["det_ap"], abs=0.051)
    from PIL import Image

    from deltalearn.mcn.report import CAPTION, GAP
    with Image.open(report / "gallery/worst_01.png") as tile:
        side = tile.height - CAPTION  # each half under its caption strip
        assert tile.width == 2 * side + GAP and side >= 512  # prediction beside ground truth, drawn legibly
    assert "report:" in capsys.readouterr().out


def test_predict_folder_skips_corrupt_image_and_single_file_fails(run: Path, data: Path, tmp_path: Path, capsys):
    source = tmp_path / "images"
    source.mkdir()
    for name in ("000000.png", "000001.png"):
        (source / name).write_bytes((data / "images" / name).read_bytes())
    (source / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "pred"
    assert main(["mcn", "predict", "--weights", str(run / "last.safetensors"), "--source", str(source),
                 "--out", str(out), "--score", "0.01"]) == 0
    entries = json.loads((out / "predictions.json").read_text())
    assert {e["task"] for e in entries} >= {"det", "pose"}
    assert {e["file_name"] for e in entries} <= {"000000.png", "000001.png"}
    det = [e for e in entries if e["task"] == "det"]
    assert all(len(e["bbox"]) == 4 and 0.01 <= e["score"] <= 1 for e in det)
    assert sorted(p.name for p in out.glob("*.png")) == ["000000.png", "000001.png"]
    assert "skipped 1 unreadable image" in capsys.readouterr().out
    assert main(["mcn", "predict", "--weights", str(run), "--source", str(source / "broken.png"), "--out", str(out)]) == EXIT_BAD_INPUT
    assert "broken.png" in capsys.readouterr().err


def test_resume_continues_from_last_epoch(run: Path, data: Path, tmp_path: Path):
    copy = tmp_path / "run"
    copy.mkdir()
    for item in run.iterdir():
        if item.is_file():
            (copy / item.name).write_bytes(item.read_bytes())
    assert main(["mcn", "train", "--data", str(data), "--out", str(copy), "--resume", "train.epochs=61"]) == 0
    steps = [r["step"] for r in read_metrics(copy) if r.get("split") == "train"]
    assert max(steps) == 61 and len(steps) == len(set(steps))


def test_weights_whose_heads_do_not_match_their_config(run: Path, tmp_path: Path):
    tensors = read_weights(run / "last.safetensors")
    no_pose = {k: v for k, v in tensors.items() if not k.startswith("tasks.pose.")}
    broken = tmp_path / "broken.safetensors"
    save_weights(no_pose, broken, metadata=weights_metadata(run / "last.safetensors"))
    with pytest.raises(CheckpointError, match=r"tasks\.pose\."):
        load_model(broken)
    model, info = load_model(run)
    assert info.category_names == ["person", "vehicle", "ball"] and info.person_label == 0
    assert isinstance(model(torch.zeros(1, 3, 96, 96)), dict)


def test_train_bad_inputs_are_one_line(data: Path, tmp_path: Path, capsys):
    assert main(["mcn", "train", "--data", str(data), "--out", str(tmp_path / "r"), "train.epoch=1"]) == EXIT_BAD_INPUT
    assert "did you mean 'train.epochs'" in capsys.readouterr().err
    assert main(["mcn", "train", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == EXIT_BAD_INPUT
    assert "nothing" in capsys.readouterr().err
    assert main(["mcn", "eval", "--weights", str(tmp_path / "none"), "--data", str(data)]) == EXIT_BAD_INPUT
