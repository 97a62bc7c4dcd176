"""Sizes of the tiny networks of the model tests."""

from __future__ import annotations

from deltalearn.data.keypoints import NUM_KEYPOINTS
from deltalearn.mcn import MultitaskCenterNet, build_mcn
from deltalearn.mcn.config import LossConfig, ModelConfig

NUM_CLASSES = 2

SMALL = {"neck_channels": 16, "head_channels": 8}  # tiny heads: fast on CPU


def mcn(backbone: str = "resnet18", tasks: tuple[str, ...] = ("det", "seg", "pose"), num_classes: int = 1,
        person_label: int = 0, loss: LossConfig | None = None, **model: object) -> MultitaskCenterNet:
    """build_mcn of a ModelConfig with these settings."""
    return build_mcn(ModelConfig(backbone=backbone, tasks=list(tasks), **model), num_classes=num_classes,
                     person_label=person_label, loss=loss)


def expected_shapes(height: int, width: int, batch: int = 2) -> dict[str, tuple[int, ...]]:
    h, w = height // 4, width // 4
    return {
        "det.heatmap": (batch, NUM_CLASSES, h, w), "det.size": (batch, 2, h, w), "det.offset": (batch, 2, h, w),
        "seg.logits": (batch, NUM_CLASSES + 1, h, w),
        "pose.heatmap": (batch, NUM_KEYPOINTS, h, w), "pose.displacement": (batch, 2 * NUM_KEYPOINTS, h, w),
        "pose.offset": (batch, 2 * NUM_KEYPOINTS, h, w),
    }

