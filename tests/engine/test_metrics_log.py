"""metrics.jsonl: train and validation lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .toy import config, train


def test_metrics_jsonl_holds_train_and_val_lines(tmp_path: Path) -> None:
    evaluate = lambda model: {"score": 1.0 - float(model[-1].weight.abs().mean())}  # noqa: E731
    train(tmp_path, config(epochs=2, log_every=3, val_every=1), evaluate=evaluate)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_lines = [r for r in lines if r["split"] == "train"]
    val_lines = [r for r in lines if r["split"] == "val"]
    for record in train_lines:
        assert {"epoch", "step", "lr", "loss", "abs_error", "steps_per_s"} <= record.keys()
        assert record["steps_per_s"] > 0  # the throughput of the steps since the line before
    # 8 steps per epoch, a line every 3 steps and one closing each epoch
    assert [r["step"] for r in train_lines] == [3, 6, 8, 9, 12, 15, 16]
    assert [(r["epoch"], r["step"]) for r in val_lines] == [(1, 8), (2, 16)]
    assert all("score" in r for r in val_lines)
    assert lines[-1]["split"] == "val"
    pytest.importorskip("tensorboard")
    assert any((tmp_path / "tb").iterdir())

