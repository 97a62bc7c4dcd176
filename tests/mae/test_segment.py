"""The patch-graph segmenter: masks at each image's size, GrabCut refinement, bad sizes and settings; the segment command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.data.errors import DataError, DataWarning
from deltalearn.mae.segment import PatchGraphConfig, PatchGraphSegmenter

from .graphs import FEW_MASKS, GRID, square_image

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)


def _one_error_line(capsys: pytest.CaptureFixture, *fragments: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert all(f in errors[0] for f in fragments), errors[0]


def test_segmenter_returns_masks_at_each_images_size(model: torch.nn.Module) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (48, 40), dtype=np.uint8)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((50, 90), (64, 64), (33, 17))]
    images.append(np.repeat(gray[..., None], 3, axis=2))
    segmenter = PatchGraphSegmenter(model, PatchGraphConfig(num_masks=FEW_MASKS))
    results = segmenter.segment(images)
    assert len(results) == len(images)
    for image, result in zip(images, results):
        assert result.mask.shape == result.score.shape == image.shape[:2]
        assert result.mask.dtype == bool and 0 <= result.score.min() and result.score.max() <= 1
        assert result.patch_score.shape == (GRID * GRID,) and result.levels
        assert np.array_equal(result.mask, result.score >= 0.5)
    again = segmenter.segment(images[:1])[0]
    assert np.array_equal(again.patch_score, results[0].patch_score)  # seeded: masks and communities


def test_segmenter_refines_with_grabcut(model: torch.nn.Module) -> None:
    image, _ = square_image()
    segmenter = PatchGraphSegmenter(model, PatchGraphConfig(num_masks=FEW_MASKS, refine="grabcut", algorithm="leiden"))
    result = segmenter.segment([image[:50]])[0]
    assert result.mask.shape == (50, 64) and result.mask.dtype == bool


def test_segmenter_rejects_images_smaller_than_a_patch(model: torch.nn.Module) -> None:
    segmenter = PatchGraphSegmenter(model, PatchGraphConfig(num_masks=FEW_MASKS))
    with pytest.raises(DataError, match="40x5 px"):
        segmenter.segment([np.zeros((64, 64, 3), np.uint8), np.zeros((5, 40, 3), np.uint8)])


@pytest.mark.parametrize("override", [{"affinity": "colour"}, {"refine": "crf"}, {"algorithm": "girvan"},
                                      {"levels": "middle"}, {"mask_ratio": 1.0}, {"num_masks": 1}])
def test_patch_graph_config_rejects_bad_values(override: dict) -> None:
    key = next(iter(override))
    with pytest.raises(ValueError, match=key):
        PatchGraphConfig(**override)


def test_segment_command_writes_masks_and_figures(tiny_data: Path, weights: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    with pytest.warns(DataWarning, match="broken.png"):
        assert main(["mae", "segment", "--weights", str(weights), "--source", str(tiny_data / "images"),
                     "--out", str(tmp_path), f"num_masks={FEW_MASKS}"]) == 0
    assert "(1 images skipped)" in capsys.readouterr().out
    stems = [f"{i:06d}" for i in range(6)] + ["gray"]
    assert sorted(p.stem for p in (tmp_path / "masks").glob("*.png")) == stems
    assert sorted(p.stem for p in (tmp_path / "figures").glob("*.png")) == stems
    for stem in stems:
        mask = np.asarray(Image.open(tmp_path / "masks" / f"{stem}.png"))
        assert mask.shape == ((40, 72) if stem == "gray" else (64, 64))
        assert set(np.unique(mask).tolist()) <= {0, 255}
        figure = np.asarray(Image.open(tmp_path / "figures" / f"{stem}.png"))
        assert figure.ndim == 3 and figure.shape[1] > 3 * figure.shape[0]  # image, error, levels, mask


def test_commands_reject_a_misspelt_setting(tiny_data: Path, weights: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    segment = ["mae", "segment", "--weights", str(weights), "--source", str(tiny_data / "images"),
               "--out", str(tmp_path / "out")]
    assert main([*segment, "resolutoin=1"]) == EXIT_BAD_INPUT
    _one_error_line(capsys, "resolutoin", "resolution")
    assert main([*segment, "affinity=colour"]) == EXIT_BAD_INPUT
    _one_error_line(capsys, "affinity", "colour")
    assert main(["mae", "eval", "--weights", str(weights), "--data", str(tmp_path / "missing")]) == EXIT_BAD_INPUT
    _one_error_line(capsys, "missing", "not found")
    assert not (tmp_path / "out").exists()

