"""Weights and training-state files: exact reloads, atomic writes, tied weights, key mismatches named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from deltalearn.engine import checkpoint as ckpt

from .toy import assert_same, config, state_of, tiny_model, train


def test_checkpoint_files_reload_exactly_and_leave_no_temp_files(tmp_path: Path) -> None:
    trainer, _ = train(tmp_path, config(epochs=1))
    assert (tmp_path / "last.safetensors").is_file() and (tmp_path / "last_state.pt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    fresh = tiny_model(seed=99)
    assert not ckpt.load_weights(fresh, tmp_path / "last.safetensors")
    assert_same(state_of(fresh), state_of(trainer.model))
    state = torch.load(tmp_path / "last_state.pt", weights_only=True)
    assert state["epoch"] == 1 and state["global_step"] == 8
    assert {"optimizer", "scheduler", "scaler", "rng", "best"} <= state.keys()


def test_save_weights_is_atomic_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.safetensors"
    ckpt.save_weights(tiny_model(), path)
    before = path.read_bytes()

    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_weights(tiny_model(seed=1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_tied_weights_and_wrapper_prefixes(tmp_path: Path) -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.embed.weight

    model = Tied()
    ckpt.save_weights(model, tmp_path / "tied.safetensors")
    fresh = Tied()
    ckpt.load_weights(fresh, tmp_path / "tied.safetensors")
    assert torch.equal(fresh.out.weight, model.embed.weight)
    assert fresh.out.weight is fresh.embed.weight

    ckpt.save_weights({"module.layer.weight": torch.ones(2, 2)}, tmp_path / "ddp.safetensors")
    assert list(ckpt.read_weights(tmp_path / "ddp.safetensors")) == ["layer.weight"]


def test_load_weights_names_missing_unexpected_and_mismatched_keys(tmp_path: Path) -> None:
    path = tmp_path / "three_classes.safetensors"
    ckpt.save_weights(nn.ModuleDict({"backbone": nn.Linear(4, 8), "det": nn.Linear(8, 3)}), path)
    other = nn.ModuleDict({"backbone": nn.Linear(4, 8), "det": nn.Linear(8, 5), "pose": nn.Linear(8, 2)})
    with pytest.raises(ckpt.CheckpointError) as error:
        ckpt.load_weights(other, path)
    message = str(error.value)
    assert str(path) in message
    assert "missing keys (2): pose.weight, pose.bias" in message
    assert "det.weight: checkpoint [3, 8] vs model [5, 8]" in message
    unexpected = nn.ModuleDict({"backbone": nn.Linear(4, 8)})
    with pytest.raises(ckpt.CheckpointError, match=r"unexpected keys \(2\): det.bias, det.weight"):
        ckpt.load_weights(unexpected, path)

    mismatch = ckpt.load_weights(other, path, strict=False)  # loads what fits, reports the rest
    assert [k for k, _, _ in mismatch.shapes] == ["det.weight", "det.bias"]
    assert torch.equal(other["backbone"].weight, ckpt.read_weights(path)["backbone.weight"])
    with pytest.raises(ckpt.CheckpointError, match="not a readable safetensors"):
        (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
        ckpt.load_weights(other, tmp_path / "bad.safetensors")

