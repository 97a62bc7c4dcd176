"""The command line as a user drives it: synth, show, and clear errors on bad input."""

import json
from pathlib import Path

import pytest

from deltalearn.cli import EXIT_BAD_INPUT, main


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    assert main(["mcn", "synth", "--out", str(out), "--images", "8", "--size", "128", "--seed", "5", "--workers", "1"]) == 0
    return out


def test_synth_writes_coco(synth_dir: Path):
    coco = json.loads((synth_dir / "annotations.json").read_text())
    assert len(coco["images"]) == 8
    assert len(list((synth_dir / "images").glob("*.png"))) == 8
    assert {c["name"] for c in coco["categories"]} >= {"person"}


def test_show_prints_summary_and_draws(synth_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "show"
    assert main(["mcn", "show", "--data", str(synth_dir), "--out", str(out), "--limit", "3"]) == 0
    text = capsys.readouterr().out
    assert "images                  8" in text and "labelled keypoints" in text and "skipped samples         0" in text
    assert len(list(out.glob("*.png"))) == 4  # three drawings and the overview


def test_show_with_coco_layout_and_subset(synth_dir: Path, tmp_path: Path, capsys):
    args = ["mcn", "show", "--ann", str(synth_dir / "annotations.json"), "--images", str(synth_dir / "images")]
    assert main(args + ["--categories", "person", "--out", str(tmp_path), "--limit", "1"]) == 0
    summary = capsys.readouterr().out
    per_category = summary.split("annotations per category:")[1].split("labelled keypoints")[0]
    assert "person" in per_category and "ball" not in per_category


def test_bad_input_is_one_clear_line(tmp_path: Path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations.json").write_text('{"images": [}')
    assert main(["mcn", "show", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "annotations.json" in err and len(err.splitlines()) == 1
    assert main(["mcn", "show", "--data", str(tmp_path / "missing")]) == EXIT_BAD_INPUT
    assert "missing" in capsys.readouterr().err
    assert main(["mcn", "show", "--out", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "--data" in capsys.readouterr().err
    assert main(["mcn", "synth", "--out", str(tmp_path / "s"), "--images", "-1"]) == EXIT_BAD_INPUT
