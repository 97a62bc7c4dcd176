"""The scores of mae eval: IoU at 0.5 and the F-beta curve; the eval command beside its baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deltalearn.cli import main
from deltalearn.data.errors import DataWarning
from deltalearn.mae.baselines import patch_ceiling
from deltalearn.mae.evaluate import THRESHOLDS, FBetaCurve, Gallery, evaluate_folder, iou_at_half
from deltalearn.mae.segment import PatchGraphConfig, PatchGraphSegmenter

from .graphs import FEW_MASKS, GRID

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)


def test_iou_at_half() -> None:
    truth = np.zeros((4, 4), bool)
    truth[:2] = True
    score = np.zeros((4, 4))
    score[:2, :2] = 0.5  # >= 0.5 counts
    score[3, 3] = 0.9
    assert iou_at_half(score, truth) == pytest.approx(4 / 9)
    assert iou_at_half(np.zeros((3, 3)), np.zeros((3, 3), bool)) == 1.0
    assert iou_at_half(np.full((3, 3), 0.49), np.ones((3, 3), bool)) == 0.0
    assert iou_at_half(truth.astype(float), truth) == 1.0


def test_fbeta_of_perfect_and_constant_scores() -> None:
    rng = np.random.default_rng(0)
    truths = [rng.random((20, 30)) < p for p in (0.1, 0.4, 0.7)]
    perfect = FBetaCurve()
    for t in truths:
        perfect.add(t.astype(np.float32), t)
    assert perfect.max_fbeta() == pytest.approx(1.0)
    constant = FBetaCurve()
    constant.add(np.ones((20, 30), np.float32), truths[1])
    assert np.allclose(constant.precision, truths[1].mean()) and np.allclose(constant.recall, 1.0)
    share = truths[1].mean()
    assert constant.max_fbeta() == pytest.approx(1.3 * share / (0.3 * share + 1))
    assert np.isnan(FBetaCurve().max_fbeta())


def test_fbeta_curve_matches_a_loop_over_thresholds() -> None:
    rng = np.random.default_rng(1)
    images = []
    for k in range(5):
        score = rng.integers(0, 257, (12, 17)) / 256.0  # many scores exactly on a threshold
        truth = rng.random((12, 17)) < 0.3 if k != 3 else np.zeros((12, 17), bool)
        if k == 4:
            score = np.minimum(score, 0.2)  # no prediction at high thresholds
        images.append((score.astype(np.float32), truth))
    curve = FBetaCurve()
    precision, recall = np.zeros(len(THRESHOLDS)), np.zeros(len(THRESHOLDS))
    for score, truth in images:
        curve.add(score, truth)
        for n, t in enumerate(THRESHOLDS):
            predicted = score >= t
            tp = (predicted & truth).sum()
            precision[n] += tp / predicted.sum() if predicted.any() else (0.0 if truth.any() else 1.0)
            recall[n] += tp / truth.sum() if truth.any() else 1.0
    np.testing.assert_allclose(curve.precision, precision, atol=1e-9)
    np.testing.assert_allclose(curve.recall, recall, atol=1e-9)
    p, r = precision / len(images), recall / len(images)
    f = np.where(p + r > 0, 1.3 * p * r / np.maximum(0.3 * p + r, 1e-12), 0.0)
    assert curve.max_fbeta() == pytest.approx(f.max(), abs=1e-9)


def test_eval_command_scores_method_and_baselines(tiny_data: Path, weights: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "scores.json"
    with pytest.warns(DataWarning, match="broken.png"):
        assert main(["mae", "eval", "--weights", str(weights), "--data", str(tiny_data), "--json", str(out),
                     f"num_masks={FEW_MASKS}"]) == 0
    printed = capsys.readouterr().out
    assert "baseline grabcut" in printed and "patch-grid ceiling 8x8" in printed
    result = json.loads(out.read_text())
    assert result["images"] == 6 and result["skipped"] == 2
    reasons = result["skipped_reasons"]
    assert any(k.endswith("broken.png") for k in reasons)
    gray = next(v for k, v in reasons.items() if k.endswith("gray.png"))
    assert "64x64" in gray and "72x40" in gray
    assert set(result["baselines"]) == {"center_prior", "grabcut", "ncut", "ncut+grabcut"}
    assert set(result["variants"]) == {"graph", "graph+grabcut"}  # no head given
    scored = [result, result["patch_ceiling"], *result["baselines"].values()]
    for scores in scored:
        assert 0.0 <= scores["iou"] <= 1.0 and 0.0 <= scores["max_fbeta"] <= 1.0
    truths = [np.asarray(Image.open(tiny_data / "masks" / f"{i:06d}.png")) > 127 for i in range(6)]
    ceiling = np.mean([iou_at_half(patch_ceiling(t, GRID, GRID).astype(np.float32), t) for t in truths])
    assert result["patch_ceiling"]["iou"] == pytest.approx(ceiling, abs=1e-4)  # small objects: well below 1
    assert result["config"]["num_masks"] == FEW_MASKS and result["grid"] == [GRID, GRID]



def test_eval_report_sets_methods_side_by_side(tiny_data: Path, weights: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    with pytest.warns(DataWarning, match="broken.png"):
        assert main(["mae", "eval", "--weights", str(weights), "--data", str(tiny_data), "--report", str(report),
                     "--gallery", "2", f"num_masks={FEW_MASKS}"]) == 0
    text = (report / "report.md").read_text()
    for picture in ("pr.png", "iou_per_image.png", "worst.png", "best.png"):
        assert (report / picture).stat().st_size > 1000 and f"({picture})" in text, picture
    numbers = json.loads((report / "report.json").read_text())
    per_image = numbers["per_image"]
    assert len(per_image) == 6 and {"graph", "graph+grabcut", "ncut", "grabcut", "center_prior"} <= set(per_image[0])
    # the table's IoU is the mean of the per-image IoUs the gallery ranks by
    assert numbers["iou"] == pytest.approx(np.mean([row["graph"] for row in per_image]), abs=1e-4)
    worst = min(per_image, key=lambda row: row["graph"])
    assert worst["file"] in text.split("## Worst 2")[1].split("## Best")[0]
    for name in ("ncut", "grabcut", "center_prior"):
        wins = sum(row[name] > row["graph"] for row in per_image)
        assert f"| {name} | {numbers['baselines'][name]['iou']:.3f} | " in text and f" | {wins} |" in text


def test_eval_scores_do_not_depend_on_the_threads(tiny_data: Path, model: torch.nn.Module) -> None:
    """The images of a batch are scored on threads (GrabCut, normalized cut): every score and
    the per-image order are those of one thread, GrabCut's seeded RNG included."""
    segmenter = PatchGraphSegmenter(model, PatchGraphConfig(num_masks=FEW_MASKS))
    with pytest.warns(DataWarning):
        alone = evaluate_folder(segmenter, tiny_data, progress=False, threads=1)
    gallery = Gallery(keep=2)
    with pytest.warns(DataWarning):
        threaded = evaluate_folder(segmenter, tiny_data, progress=False, threads=4, gallery=gallery)
    for key in ("iou", "max_fbeta", "baselines", "variants", "patch_ceiling", "images", "skipped"):
        assert threaded[key] == alone[key], key
    assert [row["file"] for row in gallery.per_image] == sorted(row["file"] for row in gallery.per_image)


def test_eval_threads_must_be_a_count(tiny_data: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["mae", "eval", "--weights", str(weights), "--data", str(tiny_data), "--threads", "-1"])
    assert exit_.value.code == 2 and "'-1' is not a whole number" in capsys.readouterr().err
