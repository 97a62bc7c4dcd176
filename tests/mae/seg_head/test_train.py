"""Training a head: loss, learning beyond empty and full masks, fine-tuning, pseudo-labels, bad masks, the train-head command."""

from __future__ import annotations

import argparse
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deltalearn.cli.mae import register_train_head
from deltalearn.config import ConfigError
from deltalearn.data.errors import DataError, DataWarning
from deltalearn.mae.evaluate import evaluate_folder
from deltalearn.mae.seg_head import (
    HEAD_FILE,
    encoder_state,
    load_seg_head,
    predict_foreground,
    soft_dice_loss,
    train_seg_head,
)
from deltalearn.mae.segment import PatchGraphConfig, PatchGraphSegmenter

from .tiny import SIZE, fresh_mae, load_folder, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)


def mean_iou(probs: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """Mean over images of IoU at 0.5; an image where both are empty counts 1."""
    scores = []
    for prob, mask in zip(probs, masks):
        pred = prob >= 0.5
        union = (pred | mask).sum()
        scores.append(1.0 if union == 0 else (pred & mask).sum() / union)
    return float(np.mean(scores))


def test_dice_loss_zero_when_right_and_grows_with_error() -> None:
    target = torch.zeros(2, 1, 8, 8)
    target[0, :, 2:6, 2:6] = 1  # second image: empty foreground
    right = (target * 2 - 1) * 30  # confident, correct logits
    assert soft_dice_loss(right, target) < 1e-3
    half = right.clone()
    half[0, :, 2:4, 2:6] = -30  # half the square missed
    wrong = -right
    assert soft_dice_loss(right, target) < soft_dice_loss(half, target) < soft_dice_loss(wrong, target)
    assert soft_dice_loss(wrong, target) > 0.9


def test_overfit_beats_empty_and_full_masks(frozen_run: tuple[Path, dict], composites: Path) -> None:
    run, result = frozen_run
    assert result["images"] == 16 and sum(result["skipped"].values()) == 0
    assert (run / HEAD_FILE).is_file() and (run / "config.yaml").is_file()
    images, masks = load_folder(composites)
    iou = mean_iou(predict_foreground(load_seg_head(run, fresh_mae()), images), masks)
    full = mean_iou([np.ones(m.shape) for m in masks], masks)
    empty = mean_iou([np.zeros(m.shape) for m in masks], masks)
    assert iou > max(0.8, 3 * full, 3 * empty), (iou, full, empty)  # 0.94 when written


def test_eval_scores_the_head_beside_the_graph(frozen_run: tuple[Path, dict], composites: Path) -> None:
    """``evaluate_folder(head=...)`` adds the head alone and refined by GrabCut; the head alone
    scores what its own probabilities score."""
    run, _ = frozen_run
    mae = fresh_mae()
    head = load_seg_head(run, mae)
    result = evaluate_folder(PatchGraphSegmenter(mae, PatchGraphConfig(num_masks=8)), composites, baselines=False,
                             progress=False, head=head)
    assert set(result["variants"]) == {"graph", "graph+grabcut", "head", "head+grabcut"}
    images, masks = load_folder(composites)
    own = mean_iou(predict_foreground(head, images), masks)
    assert result["variants"]["head"]["iou"] == pytest.approx(own, abs=1e-3)
    assert 0.0 <= result["variants"]["head+grabcut"]["iou"] <= 1.0
    assert result["iou"] == result["variants"]["graph"]["iou"]  # the method itself is still the graph


def test_finetuned_encoder_changes_and_is_stored(composites: Path, tmp_path: Path) -> None:
    mae = fresh_mae()
    before = {k: v.clone() for k, v in encoder_state(mae).items()}
    train_seg_head(mae, composites, composites, tmp_path, tiny_config(2, finetune_encoder=True))
    assert all(torch.equal(before[k], v) for k, v in encoder_state(mae).items())  # the caller's MAE is copied
    model = load_seg_head(tmp_path)  # holds its encoder: no MAE needed
    changed = [k for k, v in encoder_state(model.mae).items() if not torch.equal(before[k], v)]
    assert "patch_embed.proj.weight" in changed and len(changed) == len(before)
    images, _ = load_folder(composites)
    assert predict_foreground(model, images[:2])[0].shape == (SIZE, SIZE)


def test_pseudo_label_folder(composites: Path, tmp_path: Path) -> None:
    """Masks from another folder of the same stems: all foreground there, so the head learns that."""
    pseudo = tmp_path / "segment_out" / "masks"
    pseudo.mkdir(parents=True)
    for path in sorted((composites / "images").glob("*.png")):
        Image.fromarray(np.full((SIZE, SIZE), 255, np.uint8)).save(pseudo / path.name)
    result = train_seg_head(fresh_mae(), composites, tmp_path / "segment_out", tmp_path / "run", tiny_config(10))
    assert result["images"] == 16
    images, _ = load_folder(composites)
    probs = predict_foreground(load_seg_head(tmp_path / "run", fresh_mae()), images)
    assert min(float(p.mean()) for p in probs) > 0.9


def test_missing_bad_and_mis_sized_masks_are_skipped_and_counted(composites: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(composites, data)
    masks = data / "masks"
    for name in ("000000.png", "000001.png", "000002.png"):
        (masks / name).unlink()
    (masks / "000003.png").write_bytes(b"not a png")
    Image.fromarray(np.zeros((SIZE, SIZE // 2), np.uint8)).save(masks / "000004.png")
    (data / "images" / "000005.png").write_bytes(b"truncated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_seg_head(fresh_mae(), data, data, tmp_path / "run", tiny_config(1))
    assert result["skipped"] == {"bad_image": 1, "bad_mask": 1, "size_mismatch": 1, "missing_mask": 3}
    assert result["images"] == 10
    text = "\n".join(str(w.message) for w in caught if issubclass(w.category, DataWarning))
    for part in ("masks/000003.png", "images/000005.png", "masks/000004.png: mask is 64x32 px", "3 images without"):
        assert part in text, (part, text)


def test_no_pairs_is_a_clear_error(composites: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(other / "unrelated.png")
    with pytest.raises(DataError, match="no mask matches an image"):
        train_seg_head(fresh_mae(), composites, other, tmp_path / "run", tiny_config(1))
    with pytest.raises(DataError, match="mask folder not found"):
        train_seg_head(fresh_mae(), composites, tmp_path / "absent", tmp_path / "run", tiny_config(1))
    (other / "000000.png").write_bytes(b"broken")
    with pytest.warns(DataWarning), pytest.raises(DataError, match="none of the 1 image/mask pairs"):
        train_seg_head(fresh_mae(), composites, other, tmp_path / "run", tiny_config(1))
    assert not (tmp_path / "run" / HEAD_FILE).exists()


def test_train_head_command(composites: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from deltalearn.mae.weights import save_mae

    save_mae(fresh_mae(), tmp_path / "mae.safetensors")
    parser = argparse.ArgumentParser()
    register_train_head(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train-head", "--weights", str(tmp_path / "mae.safetensors"), "--data", str(composites),
                              "--out", str(tmp_path / "run"), "train.epochs=1", "head.hidden=0", "head.center=false", "data.max_images=5"])
    assert args.func(args) == 0
    assert "on 5 pairs" in capsys.readouterr().out
    model = load_seg_head(tmp_path / "run", fresh_mae())
    assert model.head.proj[0].in_channels == 192 and len(model.head.proj) == 1
    with pytest.raises(ConfigError, match="holds a run already"):
        args.func(args)
    bad = parser.parse_args(["train-head", "--weights", "x", "--data", str(composites), "head.hiden=3"])
    with pytest.raises(ConfigError, match="did you mean 'head.hidden'"):
        bad.func(bad)

