"""``deltalearn mae ...`` as a user drives it: synth, pretrain (and resume), reconstruct, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.config import load_config
from deltalearn.engine.checkpoint import read_weights
from deltalearn.engine.metrics_log import read_metrics
from deltalearn.mae import create_mae, load_mae
from deltalearn.mae.config import MAEPretrainConfig
from deltalearn.mae.reconstruct import GAP, HEADER, PANEL_MIN_SIDE

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)

SIZE = 32
TINY_RUN = ["data.image_size=32", "train.batch_size=4", "train.epochs=2", "train.warmup_epochs=1",
            "train.log_every=1", "train.lr=1e-3", "train.precision=fp32"]


def _one_error_line(capsys: pytest.CaptureFixture, *fragments: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert all(f in errors[0] for f in fragments), errors[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 composites of 32 px and one corrupt image among them."""
    out = tmp_path_factory.mktemp("mae_data")
    assert main(["mae", "synth", "--out", str(out), "--images", "10", "--size", str(SIZE), "--workers", "1"]) == 0
    (out / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return out


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    with pytest.warns(UserWarning, match="broken.png"):
        assert main(["mae", "pretrain", "--data", str(data), "--out", str(run), *TINY_RUN]) == 0
    return run


def test_synth_writes_images_and_masks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["mae", "synth", "--out", str(tmp_path), "--images", "3", "--size", "32", "--seed", "4",
                 "--workers", "1"]) == 0
    assert "images/s" in capsys.readouterr().out
    images, masks = (sorted(p.name for p in (tmp_path / sub).iterdir()) for sub in ("images", "masks"))
    assert images == masks == ["000000.png", "000001.png", "000002.png"]


def test_pretrain_writes_a_complete_run(run: Path) -> None:
    config = load_config(MAEPretrainConfig, run / "config.yaml")
    assert config.data.image_size == SIZE and config.train.epochs == 2
    records = [r for r in read_metrics(run) if r["split"] == "train"]
    assert records and all({"epoch", "step", "loss"} <= r.keys() for r in records)
    assert [r["step"] for r in records] == list(range(1, 7))  # 10 readable images, batches of 4: 3 a epoch
    model = load_mae(run / "mae.safetensors")
    assert model.config.image_hw == (SIZE, SIZE)
    last = read_weights(run / "last.safetensors")
    assert all(torch.equal(last[k], v) for k, v in model.state_dict().items())


def test_resume_continues_the_run(run: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for file in run.iterdir():
        if file.is_file():
            (copy / file.name).write_bytes(file.read_bytes())
    args = ["mae", "pretrain", "--data", str(data), "--out", str(copy), *TINY_RUN]
    assert main(args) == EXIT_BAD_INPUT
    _one_error_line(capsys, str(copy), "--resume")
    with pytest.warns(UserWarning) as caught:  # the broken image again, and the changed epochs
        assert main([*args[:-len(TINY_RUN)], "--resume", *TINY_RUN, "train.epochs=3"]) == 0
    assert any("changed train settings: epochs" in str(w.message) for w in caught)
    records = [r for r in read_metrics(copy) if r["split"] == "train"]
    assert [r["step"] for r in records] == list(range(1, 10)) and records[-1]["epoch"] == 3


def test_reconstruct_a_folder(run: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.warns(UserWarning, match="broken.png"):
        assert main(["mae", "reconstruct", "--weights", str(run), "--source", str(data / "images"),
                     "--out", str(tmp_path)]) == 0
    assert "1 unreadable images skipped" in capsys.readouterr().out
    figures = sorted(p.name for p in tmp_path.iterdir())
    assert figures == [f"{i:06d}.png" for i in range(10)]
    figure = np.asarray(Image.open(tmp_path / "000004.png"))
    panel = PANEL_MIN_SIDE  # 32 px enlarged 5x
    assert figure.shape[0] == HEADER + panel + GAP and figure.shape[1] > 5 * panel
    original = np.asarray(Image.open(data / "images" / "000004.png"))
    shown = figure[HEADER:HEADER + panel, :panel]
    assert np.array_equal(shown, original.repeat(5, 0).repeat(5, 1))


def test_reconstruct_one_file_is_deterministic(run: Path, data: Path, tmp_path: Path) -> None:
    for out in ("a", "b"):
        assert main(["mae", "reconstruct", "--weights", str(run / "mae.safetensors"), "--source",
                     str(data / "images" / "000001.png"), "--out", str(tmp_path / out), "--seed", "3"]) == 0
    assert (tmp_path / "a" / "000001.png").read_bytes() == (tmp_path / "b" / "000001.png").read_bytes()


def test_reconstruct_official_checkpoint_with_variant(data: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    torch.save({"model": create_mae("mae_vit_tiny_patch16").state_dict()}, tmp_path / "official.pth")
    args = ["mae", "reconstruct", "--weights", str(tmp_path / "official.pth"), "--source",
            str(data / "images" / "000000.png"), "--out", str(tmp_path / "out")]
    assert main(args) == EXIT_BAD_INPUT
    _one_error_line(capsys, "official.pth", "--variant")
    assert main([*args, "--variant", "mae_vit_tiny_patch16"]) == 0
    assert Image.open(tmp_path / "out" / "000000.png").size[1] == HEADER + 224 + GAP  # resized to 224 px


def test_bad_inputs_are_one_clear_line(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pretrain = ["mae", "pretrain", "--out", str(tmp_path / "run")]
    assert main([*pretrain, "--data", str(tmp_path / "missing")]) == EXIT_BAD_INPUT
    _one_error_line(capsys, "missing", "not found")
    assert main([*pretrain, "--data", str(data), "train.epoch=1"]) == EXIT_BAD_INPUT
    _one_error_line(capsys, "train.epoch", "did you mean 'train.epochs'")
    assert main([*pretrain, "--data", str(data), "--config", str(tmp_path / "none.yaml")]) == EXIT_BAD_INPUT
    _one_error_line(capsys, "none.yaml")
    assert not (tmp_path / "run").exists()
    bad = ["mae", "reconstruct", "--weights", str(tmp_path / "nothing"), "--source",
           str(data / "images" / "broken.png"), "--out", str(tmp_path / "o")]
    assert main(bad) == EXIT_BAD_INPUT
    _one_error_line(capsys, "nothing")


def test_reconstruct_unreadable_file(run: Path, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["mae", "reconstruct", "--weights", str(run), "--source", str(data / "images" / "broken.png"),
            "--out", str(tmp_path)]
    assert main(args) == EXIT_BAD_INPUT
    _one_error_line(capsys, "broken.png", "not an image")
    assert not list(tmp_path.iterdir())
