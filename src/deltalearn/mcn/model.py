"""The Multitask CenterNet: backbone -> neck (stride 4) -> any subset of task heads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..data.sample import Sample
from .backbones import TimmBackbone
from .config import LossConfig, ModelConfig
from .necks import UpsampleNeck
from .tasks import TASKS, DetectionTask, PoseTask, SegmentationTask, Task, check_task_names
from .tasks.detection import MAX_OBJECTS
from .vit import build_vit_backbone, is_vit_backbone

LOSS_TOTAL = "loss"  # key of the summed loss in :meth:`MultitaskCenterNet.loss`


class MultitaskCenterNet(nn.Module):
    """``backbone`` (list of feature maps) + ``neck`` (one stride-4 map) + named ``tasks``.

    ``forward(images)`` takes float [B, 3, H, W] normalised as in
    :func:`deltalearn.mcn.backbones.normalize_images` and returns the raw outputs of all
    tasks in one dict keyed ``<task>.<output>`` (e.g. ``det.heatmap``, ``seg.logits``).
    Encoding, losses and decoding are the tasks'; the model only delegates to them.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, tasks: Mapping[str, Task],
                 weighting: UncertaintyWeighting | None = None) -> None:
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
        self.weighting = weighting  # None: the tasks' weighted terms are summed as they are

    def no_weight_decay(self) -> set[str]:
        """Parameters kept out of weight decay beyond biases and norms (timm's convention): a ViT
        backbone's position embeddings and class token."""
        inner = self.backbone.no_weight_decay() if hasattr(self.backbone, "no_weight_decay") else set()
        return {f"backbone.{name}" for name in inner}

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
        """Weighted loss terms of all tasks (``<task>.<term>``) and the total under ``"loss"``:
        their sum, or with a ``weighting`` its combination of the per-task sums (and the
        learned weights under ``weight.<task>``)."""
        zero = torch.zeros((), device=next(iter(outputs.values())).device)
        terms: dict[str, torch.Tensor] = {}
        per_task: dict[str, torch.Tensor] = {}
        for name, task in self.tasks.items():
            found = task.loss(outputs, targets)
            terms.update(found)
            per_task[name] = sum(found.values(), zero)
        if self.weighting is None:
            terms[LOSS_TOTAL] = sum(per_task.values(), zero)
        else:
            terms[LOSS_TOTAL] = self.weighting(per_task)
            terms.update({f"weight.{name}": weight for name, weight in self.weighting.weights().items()})
        return terms

    def decode(self, outputs: Mapping[str, torch.Tensor], **options: Any) -> dict[str, list[Any]]:
        """Per-task, per-image results; ``options[task_name]`` holds keyword options of one task."""
        return {name: task.decode(outputs, self.output_stride, **options.get(name, {}))
                for name, task in self.tasks.items()}


class UncertaintyWeighting(nn.Module):
    """Learned homoscedastic task weighting (Kendall, Gal and Cipolla, CVPR 2018):
    loss = sum over tasks of exp(-s_t) * L_t + s_t, with s_t = log sigma_t^2 learned per task
    (0 at the start: every weight 1). A task whose loss stays high gets a smaller weight."""

    def __init__(self, tasks: Sequence[str]) -> None:
        super().__init__()
        self.log_vars = nn.ParameterDict({name: nn.Parameter(torch.zeros(())) for name in tasks})

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return sum(torch.exp(-self.log_vars[name]) * loss + self.log_vars[name] for name, loss in losses.items())

    def weights(self) -> dict[str, torch.Tensor]:
        """exp(-s_t) per task, detached: the weight each task's loss gets now."""
        return {name: torch.exp(-value.detach()) for name, value in self.log_vars.items()}


def build_mcn(config: ModelConfig, num_classes: int = 1, person_label: int = 0, loss: LossConfig | None = None,
              max_objects: int = MAX_OBJECTS, backbone_weights: bool = True) -> MultitaskCenterNet:
    """The Multitask CenterNet that ``config`` describes: its backbone (timm, ImageNet weights
    if ``config.pretrained``; or a plain ViT, from an MAE's encoder for ``mae:RUN_OR_FILE``,
    filling ``config.vit`` in), neck and tasks.

    ``num_classes`` object classes for det and seg; pose finds persons as detection class
    ``person_label``. ``loss`` gives each task's loss-term weights (default: LossConfig's);
    ``max_objects`` per image get box and pose targets. ``backbone_weights=False`` skips
    reading an MAE's weights (the caller loads a whole trained network next).
    """
    check_task_names(config.tasks)
    loss = loss or LossConfig()
    if is_vit_backbone(config.backbone):
        backbone: nn.Module = build_vit_backbone(config, load_weights=backbone_weights)
    else:
        backbone = TimmBackbone(config.backbone, pretrained=config.pretrained)
    neck = UpsampleNeck(backbone.channels, backbone.reductions, config.neck_channels, config.neck_conv)
    common: dict[str, Any] = {"in_channels": neck.out_channels, "head_channels": config.head_channels,
                              "head_trunk": config.head_trunk, "head_conv": config.head_conv}
    built: dict[str, Task] = {}
    for name in TASKS:  # in the order det, seg, pose, whatever the order of config.tasks
        if name not in config.tasks:
            continue
        terms = loss.term_weights(name)
        if name == DetectionTask.name:
            built[name] = DetectionTask(num_classes, max_objects=max_objects, term_weights=terms,
                                        box_regression=config.box_regression, **common)
        elif name == SegmentationTask.name:
            built[name] = SegmentationTask(num_classes, term_weights=terms, **common)
        elif name == PoseTask.name:
            built[name] = PoseTask(person_label=person_label, pose_offsets=config.pose_offsets,
                                   max_objects=max_objects, term_weights=terms, regression=config.pose_regression,
                                   **common)
    weighting = UncertaintyWeighting(list(built)) if loss.weighting == "uncertainty" else None
    return MultitaskCenterNet(backbone, neck, built, weighting)
