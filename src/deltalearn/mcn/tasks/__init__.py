"""The MCN tasks: each owns its head, targets, loss, decoding and COCO results."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from .base import HeadSpec, Results, Task
from .detection import Detections, DetectionTask, decode_detections
from .pose import POSE_OFFSETS, Poses, PoseTask, decode_poses
from .segmentation import SegmentationTask, SemanticMaps, decode_segmentation

TASK_TYPES: dict[str, type[Task]] = {task.name: task for task in (DetectionTask, SegmentationTask, PoseTask)}
TASKS = tuple(TASK_TYPES)  # "det", "seg", "pose"


def unknown_tasks(names: Sequence[str]) -> str:
    """The names that are not tasks, each with the nearest task name ('' when all are known)."""
    return ", ".join(f"{u!r} (did you mean {difflib.get_close_matches(u, TASKS, 1) or list(TASKS)}?)"
                     for u in names if u not in TASK_TYPES)


def check_task_names(names: Sequence[str]) -> None:
    """Raise ValueError unless ``names`` is a non-empty subset of TASKS holding what each task needs."""
    unknown = unknown_tasks(names)
    if unknown or not names:
        raise ValueError(f"tasks must be a non-empty subset of {list(TASKS)}; unknown: {unknown}")
    for name in names:
        TASK_TYPES[name].check_requirements(names)


__all__ = [
    "POSE_OFFSETS", "TASKS", "TASK_TYPES", "DetectionTask", "Detections", "HeadSpec", "PoseTask", "Poses", "Results",
    "SegmentationTask", "SemanticMaps", "Task", "check_task_names", "unknown_tasks", "decode_detections", "decode_poses",
    "decode_segmentation",
]
