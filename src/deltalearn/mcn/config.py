"""Configuration of a Multitask CenterNet run: data, model, losses, training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..engine.config import TrainConfig

TASK_NAMES = ("det", "seg", "pose")


@dataclass
class DataConfig:
    image_size: int = 256  # network input side in px (letterboxed square), a multiple of 32
    categories: list[str] = field(default_factory=list)  # subset by name, e.g. [person]; empty: all
    scale_range: tuple[float, float] = (0.6, 1.4)  # random zoom of training images
    shift: float = 0.2  # random translation, fraction of the image side
    flip: float = 0.5  # probability of a horizontal flip (left/right keypoints swap)
    color_jitter: float = 0.3  # brightness, contrast and saturation jitter
    workers: int = 2  # DataLoader processes


@dataclass
class ModelConfig:
    backbone: str = "dla34"  # any timm model with features_only support
    pretrained: bool = False  # ImageNet weights from timm (needs internet the first time)
    tasks: list[str] = field(default_factory=lambda: list(TASK_NAMES))  # any subset of det, seg, pose
    neck_channels: int = 64  # channels of the stride-4 feature map shared by all heads
    head_channels: int = 64  # hidden channels of each head's 3x3 conv
    pose_offsets: Literal["per_joint", "shared"] = "per_joint"  # keypoint sub-pixel offsets


@dataclass
class LossConfig:
    det: float = 1.0  # weight of the detection heatmap loss
    det_size: float = 0.1  # weight of the box-size L1 loss (CenterNet's 0.1)
    det_offset: float = 1.0  # weight of the center-offset L1 loss
    seg: float = 1.0  # weight of the segmentation cross-entropy
    seg_dice: float = 0.0  # weight of an extra Dice loss on segmentation
    pose: float = 1.0  # weight of the keypoint heatmap loss
    pose_center: float = 1.0  # weight of the center-to-keypoint offset L1 loss
    pose_offset: float = 1.0  # weight of the keypoint sub-pixel offset L1 loss


@dataclass
class MCNConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        from ..config import ConfigError

        unknown = [t for t in self.model.tasks if t not in TASK_NAMES]
        if unknown or not self.model.tasks:
            raise ConfigError(f"model.tasks must be a non-empty subset of {list(TASK_NAMES)}, got {self.model.tasks}")
        if "pose" in self.model.tasks and "det" not in self.model.tasks:
            raise ConfigError("model.tasks: pose needs det (keypoints are regressed from person centers)")
        if self.data.image_size % 32:
            raise ConfigError(f"data.image_size must be a multiple of 32, got {self.data.image_size}")
