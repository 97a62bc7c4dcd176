"""A tiny head config, a fresh MAE and the scores that the segmentation-head tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deltalearn.data.io import load_rgb, read_mask
from deltalearn.mae import create_mae
from deltalearn.mae.seg_head import SegHeadConfig

VARIANT = "mae_vit_cpu_patch8"

SIZE = 64


def tiny_config(epochs: int, **train: object) -> SegHeadConfig:
    """Overfitting settings for 16 images: one batch, no flips, a high head learning rate, BCE + Dice."""
    config = SegHeadConfig()
    config.head.refine = True
    config.data.flip = 0.0
    config.train.epochs, config.train.batch_size, config.train.lr = epochs, 16, 3e-2
    config.train.warmup_epochs, config.train.dice_weight = min(5, epochs / 2), 1.0
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def fresh_mae() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_mae(VARIANT).eval()


def load_folder(folder: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    images = [load_rgb(p) for p in sorted((folder / "images").glob("*.png"))]
    masks = [read_mask(p) for p in sorted((folder / "masks").glob("*.png"))]
    return images, masks

