"""Multitask CenterNet: a shared backbone and neck at stride 4 feeding detection,
segmentation and pose heads (Heuer et al., ICCV-W 2021)."""

from .backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, TimmBackbone, normalize_images
from .model import MultitaskCenterNet, build_mcn
from .necks import UpsampleNeck
from .tasks import TASKS, DetectionTask, PoseTask, SegmentationTask, Task

__all__ = [
    "BACKBONES", "IMAGENET_MEAN", "IMAGENET_STD", "TASKS", "DetectionTask", "MultitaskCenterNet", "PoseTask",
    "SegmentationTask", "Task", "TimmBackbone", "UpsampleNeck", "build_mcn", "normalize_images",
]
