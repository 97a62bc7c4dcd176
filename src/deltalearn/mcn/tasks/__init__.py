"""The MCN tasks: each owns its head, targets, loss, decoding and COCO results."""

from .base import HeadSpec, Results, Task
from .detection import Detections, DetectionTask, decode_detections
from .pose import POSE_OFFSETS, Poses, PoseTask, decode_poses
from .segmentation import SegmentationTask, SemanticMaps, decode_segmentation

TASKS = (DetectionTask.name, SegmentationTask.name, PoseTask.name)  # "det", "seg", "pose"

__all__ = [
    "POSE_OFFSETS", "TASKS", "DetectionTask", "Detections", "HeadSpec", "PoseTask", "Poses", "Results",
    "SegmentationTask", "SemanticMaps", "Task", "decode_detections", "decode_poses", "decode_segmentation",
]
