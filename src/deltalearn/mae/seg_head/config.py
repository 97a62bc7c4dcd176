"""Settings of the segmentation head, its training data and its training."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import ConfigError
from ...engine.config import TrainConfig


@dataclass
class HeadConfig:
    hidden: int = 64  # channels of a 3x3 conv (+ GELU) on the patch grid; 0: BatchNorm + linear only
    center: bool = True  # also feed each token minus its image's mean token
    refine: bool = True  # add a full-resolution conv refinement that sees the RGB image
    refine_channels: int = 16  # width of the refinement's 3x3 convs


@dataclass
class SegDataConfig:
    max_images: int = 0  # train on the first N image/mask pairs (sorted by path); 0: all
    flip: float = 0.5  # probability of a horizontal flip of image and mask


@dataclass
class SegTrainConfig(TrainConfig):
    epochs: int = 20  # passes over the pairs
    batch_size: int = 64  # images per step
    lr: float = 1e-2  # peak learning rate of the head
    weight_decay: float = 0.01  # AdamW, not on norms and biases
    warmup_epochs: float = 0.5  # linear warm-up
    val_every: int = 0  # no evaluation while training
    finetune_encoder: bool = False  # also train the MAE encoder; false: frozen
    encoder_lr_scale: float = 0.1  # encoder lr = lr * this, when fine-tuned
    dice_weight: float = 1.0  # loss = BCE + dice_weight * soft Dice loss (BCE alone: IoU at 0.5 lags)


@dataclass
class SegHeadConfig:
    head: HeadConfig = field(default_factory=HeadConfig)
    data: SegDataConfig = field(default_factory=SegDataConfig)
    train: SegTrainConfig = field(default_factory=SegTrainConfig)

    def __post_init__(self) -> None:
        if self.train.encoder_lr_scale <= 0:
            raise ConfigError(f"train.encoder_lr_scale must be above 0, got {self.train.encoder_lr_scale}")
        if self.head.hidden < 0 or self.head.refine_channels < 1:
            raise ConfigError("head.hidden must be >= 0 and head.refine_channels >= 1")
