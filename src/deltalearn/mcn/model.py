"""The Multitask CenterNet: backbone -> neck (stride 4) -> any subset of task heads."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..data.sample import Sample
from .backbones import TimmBackbone
from .necks import UpsampleNeck
from .tasks import TASKS, DetectionTask, PoseTask, SegmentationTask, Task

LOSS_TOTAL = "loss"  # key of the summed loss in :meth:`MultitaskCenterNet.loss`


class MultitaskCenterNet(nn.Module):
    """``backbone`` (list of feature maps) + ``neck`` (one stride-4 map) + named ``tasks``.

    ``forward(images)`` takes float [B, 3, H, W] normalised as in
    :func:`deltalearn.mcn.backbones.normalize_images` and returns the raw outputs of all
    tasks in one dict keyed ``<task>.<output>`` (e.g. ``det.heatmap``, ``seg.logits``).
    Encoding, losses and decoding are the tasks'; the model only delegates to them.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, tasks: Mapping[str, Task]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a MultitaskCenterNet needs at least one task")
        for key, task in tasks.items():
            if key != task.name:
                raise ValueError(f"task registered as {key!r} has name {task.name!r}; use its name as key")
        for task in tasks.values():
            task.check_tasks(tasks)
        self.backbone = backbone
        self.neck = neck
        self.tasks = nn.ModuleDict(tasks)

    @property
    def output_stride(self) -> int:
        """Input pixels per cell of the heads' outputs."""
        return int(self.neck.output_stride)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [B, 3, H, W] -> raw outputs, each [B, channels, H / stride, W / stride]."""
        features = self.neck(self.backbone(images))  # [B, C, H / 4, W / 4]
        outputs: dict[str, torch.Tensor] = {}
        for task in self.tasks.values():
            outputs.update(task(features))
        return outputs

    def encode(self, samples: Sequence[Sample]) -> dict[str, torch.Tensor]:
        """Batched training targets of all tasks, keyed ``<task>.<target>``."""
        targets: dict[str, torch.Tensor] = {}
        for task in self.tasks.values():
            targets.update(task.encode(samples, self.output_stride))
        return targets

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weighted loss terms of all tasks (``<task>.<term>``) and their sum under ``"loss"``."""
        terms: dict[str, torch.Tensor] = {}
        for task in self.tasks.values():
            terms.update(task.loss(outputs, targets))
        terms[LOSS_TOTAL] = sum(terms.values(), torch.zeros((), device=next(iter(outputs.values())).device))
        return terms

    def decode(self, outputs: Mapping[str, torch.Tensor], **options: Any) -> dict[str, list[Any]]:
        """Per-task, per-image results; ``options[task_name]`` holds keyword options of one task."""
        return {name: task.decode(outputs, self.output_stride, **options.get(name, {}))
                for name, task in self.tasks.items()}


def build_mcn(backbone_name: str = "dla34", tasks: Sequence[str] = ("det", "seg", "pose"), num_classes: int = 1,
              person_label: int = 0, head_channels: int = 64, neck_channels: int = 64, pretrained: bool = False,
              pose_offsets: str = "per_joint", max_objects: int = 128,
              loss_weights: Mapping[str, float] | None = None, head_trunk: str = "per_output",
              box_regression: str = "center", pose_regression: str = "center") -> MultitaskCenterNet:
    """A Multitask CenterNet with the named ``tasks`` (any subset of det, seg, pose).

    ``num_classes`` object classes for det and seg; pose finds persons as detection class
    ``person_label``. ``loss_weights`` maps ``<task>.<term>`` (e.g. ``det.size``) to the
    term's weight, overriding the tasks' defaults. ``head_trunk``: one hidden 3x3 conv per
    output (``per_output``, CenterNet's) or one per task shared by its outputs (``per_task``).
    ``box_regression`` and ``pose_regression``: the cells that learn box size and offset, and
    keypoint displacements: ``center`` (CenterNet's) or ``region`` (TTFNet's Gaussian area,
    see :func:`deltalearn.mcn.heatmaps.regression_region`).
    """
    unknown = [name for name in tasks if name not in TASKS]
    if unknown or not tasks:
        hints = [f"{u!r} (did you mean {difflib.get_close_matches(u, TASKS, 1) or list(TASKS)}?)" for u in unknown]
        raise ValueError(f"tasks must be a non-empty subset of {list(TASKS)}; unknown: {', '.join(hints)}")
    if PoseTask.name in tasks and DetectionTask.name not in tasks:
        raise ValueError("task 'pose' needs task 'det': keypoints are regressed from the person centers "
                         "of the detection heatmap; use tasks=('det', 'pose', ...)")
    weights = _split_loss_weights(loss_weights or {}, tasks)
    backbone = TimmBackbone(backbone_name, pretrained=pretrained)
    neck = UpsampleNeck(backbone.channels, backbone.reductions, neck_channels)
    common: dict[str, Any] = {"in_channels": neck.out_channels, "head_channels": head_channels,
                              "head_trunk": head_trunk}
    built: dict[str, Task] = {}
    if DetectionTask.name in tasks:
        built["det"] = DetectionTask(num_classes, max_objects=max_objects, term_weights=weights["det"],
                                     box_regression=box_regression, **common)
    if SegmentationTask.name in tasks:
        built["seg"] = SegmentationTask(num_classes, term_weights=weights["seg"], **common)
    if PoseTask.name in tasks:
        built["pose"] = PoseTask(person_label=person_label, pose_offsets=pose_offsets, max_objects=max_objects,
                                 term_weights=weights["pose"], regression=pose_regression, **common)
    return MultitaskCenterNet(backbone, neck, built)


def _split_loss_weights(loss_weights: Mapping[str, float], tasks: Sequence[str]) -> dict[str, dict[str, float]]:
    """{"det.size": 0.1} -> {"det": {"size": 0.1}, "seg": {}, "pose": {}}; unknown tasks fail."""
    split: dict[str, dict[str, float]] = {name: {} for name in TASKS}
    for key, value in loss_weights.items():
        task, _, term = key.partition(".")
        if task not in TASKS or not term:
            raise ValueError(f"loss weight {key!r}: expected '<task>.<term>' with task in {list(TASKS)}")
        split[task][term] = float(value)
    return split
