"""Warm start (--init): matching tensors load, added and mismatched heads stay fresh, bad files fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.engine.checkpoint import CheckpointError, read_weights, save_weights
from deltalearn.mcn.warm_start import warm_start

from .sizes import SMALL, mcn

TINY = ["model.backbone=resnet18", "model.neck_channels=16", "model.head_channels=16", "data.image_size=64",
        "data.workers=0", "train.epochs=1", "train.batch_size=4"]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _saved(tmp_path: Path, seed: int, **kwargs: object) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    model = mcn(**SMALL, **kwargs)
    path = tmp_path / f"old{seed}.safetensors"
    save_weights(model, path)
    return path, _state(model)


def test_matching_tensors_load_and_an_added_task_stays_fresh(tmp_path: Path) -> None:
    path, old = _saved(tmp_path, seed=1, tasks=("det", "seg"), num_classes=2)
    torch.manual_seed(2)
    model = mcn(**SMALL, tasks=("det", "seg", "pose"), num_classes=2)
    fresh = _state(model)
    report = warm_start(model, path)
    now = model.state_dict()
    assert report.loaded == list(old) and not report.skipped and not report.unused
    assert all(torch.equal(now[k], v) for k, v in old.items())  # backbone, neck, det, seg: the file's
    assert report.new == [k for k in fresh if k.startswith("tasks.pose.")]
    assert all(torch.equal(now[k], fresh[k]) for k in report.new)  # pose: its fresh initialisation
    assert not torch.equal(fresh["backbone.body.conv1.weight"], now["backbone.body.conv1.weight"])
    assert report.metrics() == {"init": str(path), "init_loaded": len(old), "init_new": len(report.new),
                                "init_skipped": 0}


def test_heads_for_another_number_of_classes_are_skipped_and_reported(tmp_path: Path) -> None:
    path, old = _saved(tmp_path, seed=1, tasks=("det", "seg", "pose"), num_classes=3)
    model = mcn(**SMALL, tasks=("det", "pose"), num_classes=1)
    fresh = _state(model)
    report = warm_start(model, path)
    skipped = {item.name: (item.file_shape, item.model_shape) for item in report.skipped}
    assert skipped and all(name.startswith("tasks.det.") for name in skipped)  # the class heatmap's last conv
    assert all(file[0] == 3 and here[0] == 1 for file, here in skipped.values())
    assert all(torch.equal(model.state_dict()[k], fresh[k]) for k in skipped)  # fresh, not the file's
    assert sorted(report.unused) == sorted(k for k in old if k.startswith("tasks.seg."))
    lines = report.describe().splitlines()
    assert lines[0].startswith(f"init from {path}: {len(report.loaded)} tensors loaded, 0 new, {len(skipped)} skipped")
    det = next(line for line in lines if line.strip().startswith("tasks.det "))
    name, (file_shape, model_shape) = next(iter(skipped.items()))
    assert f"skipped {len(skipped)}: {name} (file {list(file_shape)}, model {list(model_shape)})" in det
    assert any(line.strip().startswith("tasks.seg ") and "unused" in line for line in lines)
    assert any(line.strip().startswith("backbone ") for line in lines)


def test_bad_init_files_are_checkpoint_errors(tmp_path: Path) -> None:
    model = mcn(**SMALL, tasks=("det",))
    with pytest.raises(CheckpointError, match="weights file not found"):
        warm_start(model, tmp_path / "missing.safetensors")
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        warm_start(model, tmp_path / "notes.txt")
    save_weights({"encoder.weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="none of its 1 tensors fits the model"):
        warm_start(model, tmp_path / "other.safetensors")
    with pytest.raises(CheckpointError, match="neither best.safetensors nor last.safetensors"):
        warm_start(model, tmp_path)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("warm")
    assert main(["mcn", "synth", "--out", str(root / "set"), "--images", "8", "--size", "64", "--workers", "1",
                 "--keypoint-min-area", "0"]) == 0
    return root / "set"


@pytest.fixture(scope="module")
def seg_det_run(data: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "seg_det"
    assert main(["mcn", "train", "--data", str(data), "--out", str(out), *TINY, "model.tasks=[det,seg]"]) == 0
    return out


def test_grow_seg_det_into_seg_det_pose_with_frozen_backbone(seg_det_run: Path, data: Path, tmp_path: Path,
                                                            capsys) -> None:
    capsys.readouterr()
    out = tmp_path / "grown"
    assert main(["mcn", "train", "--data", str(data), "--out", str(out), "--init", str(seg_det_run), *TINY,
                 "model.tasks=[det,seg,pose]", "train.freeze=[backbone,neck]"]) == 0
    text = capsys.readouterr().out
    before, after = read_weights(seg_det_run / "last.safetensors"), read_weights(out / "last.safetensors")
    assert f"init from {seg_det_run / 'last.safetensors'}: {len(before)} tensors loaded, " in text
    assert "0 skipped (shape mismatch), 0 unused from the file" in text
    pose = [line for line in text.splitlines() if line.strip().startswith("tasks.pose ")]
    assert pose and pose[0].split()[1:] == ["new", str(sum(k.startswith("tasks.pose.") for k in after))]
    frozen = [k for k in before if k.startswith(("backbone.", "neck."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # BatchNorm statistics too
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("tasks.det."))  # trained


def test_bad_init_is_one_line_and_exit_2_before_training(seg_det_run: Path, data: Path, tmp_path: Path,
                                                         capsys) -> None:
    save_weights({"encoder.weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    cases = {
        "missing": (["--init", str(tmp_path / "missing")], "weights file not found"),
        "not_weights": (["--init", str(data / "annotations.json")], "not a readable safetensors file"),
        "mismatch": (["--init", str(tmp_path / "other.safetensors")], "none of its 1 tensors fits"),
        "resume": (["--init", str(seg_det_run), "--resume"], "--init and --resume exclude each other"),
        "freeze": (["--init", str(seg_det_run), "train.freeze=[backbne]"], "nearest valid prefixes: backbone"),
    }
    for name, (args, message) in cases.items():
        out = tmp_path / name
        capsys.readouterr()
        assert main(["mcn", "train", "--data", str(data), "--out", str(out), *args, *TINY]) == EXIT_BAD_INPUT, name
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, (name, err)
        assert not (out / "last.safetensors").exists() and not (out / "metrics.jsonl").exists(), name
