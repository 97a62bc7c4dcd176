"""Fixtures shared by the tests of this folder."""

from pathlib import Path

import pytest

from deltalearn.cli import main

from .settings import SIZE, TINY


@pytest.fixture(scope="package")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export") / "set"
    assert main(["mcn", "synth", "--out", str(root), "--images", "8", "--size", str(SIZE), "--seed", "5",
                 "--workers", "1"]) == 0
    return root


@pytest.fixture(scope="package")
def run(data: Path, tmp_path_factory) -> Path:
    """A briefly trained seg+det+pose model (24 steps): peaks that stand out of the heatmaps."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["mcn", "train", "--data", str(data), "--out", str(out), *TINY, "train.epochs=24"]) == 0
    return out


@pytest.fixture(scope="package")
def exported(run: Path, tmp_path_factory) -> dict[str, Path]:
    """The run exported with raw outputs and with decoding in the graph."""
    folder = tmp_path_factory.mktemp("onnx")
    files = {"raw": folder / "raw.onnx", "decoded": folder / "decoded.onnx"}
    assert main(["mcn", "export", "--weights", str(run), "--out", str(files["raw"])]) == 0
    assert main(["mcn", "export", "--weights", str(run), "--out", str(files["decoded"]), "--decode"]) == 0
    return files

