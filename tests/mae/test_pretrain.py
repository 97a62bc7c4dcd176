"""MAE pretraining: the trivial baseline, the optimizer recipe, the configs, and a tiny run that learns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deltalearn.config import PACKAGED_CONFIGS, ConfigError, load_config
from deltalearn.engine.metrics_log import read_metrics
from deltalearn.engine.precision import resolve_precision
from deltalearn.engine.trainer import build_optimizer
from deltalearn.mae import create_mae
from deltalearn.mae.config import MAEPretrainConfig
from deltalearn.mae.model import masked_mean, patchify
from deltalearn.mae.pretrain import heldout_losses, mae_param_groups, pretrain, trivial_prediction

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)

CONFIGS = PACKAGED_CONFIGS / "mae"


def test_trivial_prediction_by_hand() -> None:
    """Patches of 2x2, keep the top two: every patch is the mean colour of pixels 1..8."""
    first = torch.tensor([[1, 2, 5, 6], [3, 4, 7, 8], [9, 10, 13, 14], [11, 12, 15, 16]], dtype=torch.float32)
    imgs = torch.stack([first, 10 * first])[None]  # [1, 2, 4, 4]; channel 2 is 10x channel 1
    mask = torch.tensor([[0, 0, 1, 1]])
    pred = trivial_prediction(imgs, mask, patch_size=2)
    assert pred.shape == (1, 4, 8)
    assert torch.equal(pred[0, :, 0::2], torch.full((4, 4), 4.5))  # values ordered (p, q, c)
    assert torch.equal(pred[0, :, 1::2], torch.full((4, 4), 45.0))
    # removed patches 9..12 and 13..16 are 37.25 and 101.25 off in MSE in channel 1, 100x that in channel 2
    loss = masked_mean(((pred - patchify(imgs, 2)) ** 2).mean(-1), mask)
    assert loss.item() == pytest.approx((37.25 + 101.25) / 2 * (1 + 100) / 2)
    assert torch.equal(trivial_prediction(imgs, mask, 2, norm_pix_loss=True), torch.zeros(1, 4, 8))


def test_heldout_losses_same_masks_and_exact_baseline() -> None:
    torch.manual_seed(0)
    model = create_mae("mae_vit_cpu_patch8", img_size=32).eval()
    fp32 = resolve_precision("fp32", "cpu")
    flat = torch.randn(5, 3, 1, 1).expand(5, 3, 32, 32)  # one colour per image: the baseline is exact
    losses = heldout_losses(model, flat, 0.75, fp32)
    assert losses["baseline_loss"] == pytest.approx(0.0, abs=1e-10) and losses["loss"] > 0.01
    noisy = torch.randn(5, 3, 32, 32)
    assert heldout_losses(model, noisy, 0.75, fp32) == heldout_losses(model, noisy, 0.75, fp32)
    assert heldout_losses(model, noisy, 0.75, fp32)["baseline_loss"] == pytest.approx(1.0, abs=0.1)


def test_param_groups_follow_the_paper() -> None:
    model = create_mae("mae_vit_cpu_patch8", img_size=32)
    names = {id(p): name for name, p in model.named_parameters()}
    decay, no_decay = mae_param_groups(model, 0.05, (0.9, 0.95))
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert {"cls_token", "mask_token", "norm.weight", "blocks.0.norm1.bias", "blocks.0.attn.qkv.bias"} <= kept
    assert {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "decoder_pred.weight"} <= decayed
    assert len(decayed) + len(kept) == len(names)
    optimizer = build_optimizer([decay, no_decay], load_config(MAEPretrainConfig).train)
    assert [(g["weight_decay"], g["betas"]) for g in optimizer.param_groups] == [(0.05, (0.9, 0.95)), (0.0, (0.9, 0.95))]


def test_learning_rate_rule() -> None:
    config = load_config(MAEPretrainConfig, None, ["train.blr=1e-3", "train.batch_size=128"])
    assert config.peak_lr() == pytest.approx(5e-4) and config.peak_lr(world_size=4) == pytest.approx(2e-3)
    assert load_config(MAEPretrainConfig, None, ["train.lr=0.01"]).peak_lr(world_size=4) == 0.01


def test_synth_cpu_yaml_is_the_embedded_default() -> None:
    assert load_config(MAEPretrainConfig, CONFIGS / "synth_cpu.yaml") == MAEPretrainConfig()


def test_imagenet_base_yaml_is_the_paper_recipe() -> None:
    config = load_config(MAEPretrainConfig, CONFIGS / "imagenet_base.yaml")
    assert (config.model.variant, config.data.image_size, config.model.mask_ratio) == ("mae_vit_base_patch16", 224, 0.75)
    assert config.model.norm_pix_loss and config.data.crop_scale == (0.2, 1.0)
    assert (config.train.blr, config.train.warmup_epochs, config.train.epochs) == (1.5e-4, 40, 800)
    assert config.peak_lr(world_size=4096 // config.train.batch_size) == pytest.approx(2.4e-3)  # 4096 images a step


def test_bad_config_values_fail() -> None:
    with pytest.raises(ConfigError, match="mask_ratio"):
        load_config(MAEPretrainConfig, None, ["model.mask_ratio=1.0"])
    with pytest.raises(ConfigError, match="did you mean 'train.blr'"):
        load_config(MAEPretrainConfig, None, ["train.bl=1e-3"])


def _images(folder: Path, count: int, size: int) -> Path:
    """``count`` smooth random images: colour gradients a small MAE can learn to fill in."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size)[None, :, None]
    for i in range(count):
        a, b = rng.uniform(0, 255, (2, 1, 1, 3))
        pixels = np.broadcast_to(a + (b - a) * ramp, (size, size, 3))
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def test_tiny_run_learns_and_refuses_to_overwrite(tmp_path: Path) -> None:
    data = _images(tmp_path / "data", 8, 32)
    overrides = ["data.image_size=32", "train.batch_size=4", "train.epochs=12", "train.warmup_epochs=1",
                 "train.lr=2e-3", "train.log_every=1", "train.val_every=12", "train.precision=fp32"]
    config = load_config(MAEPretrainConfig, None, overrides)
    result = pretrain(config, data, tmp_path / "run", val_dir=data)
    losses = [r["loss"] for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert len(losses) == 24 and result["step"] == 24
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:2])
    assert result["val_loss"] < 2 * result["val_baseline_loss"]  # untrained: about 5x
    with pytest.raises(ConfigError, match="--resume"):
        pretrain(config, data, tmp_path / "run")


