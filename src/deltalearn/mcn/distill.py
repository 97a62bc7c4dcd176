"""Learning without Forgetting (Li and Hoiem, 2016) for a network grown with ``--init``.

The trained network the new one starts from stays as a frozen teacher. On each training
image, every task both networks have and the image is not labelled for learns to give the
teacher's outputs (:meth:`Task.distill`: heatmaps and class maps by KL divergence, regressions
by L1 where the teacher sees objects). So a seg + det network that learns pose from images
labelled for pose only keeps what it knew of masks and boxes on those same images, instead of
drifting wherever the pose loss pulls the shared backbone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..config import ConfigError
from .model import MultitaskCenterNet
from .weights import ModelInfo, load_model

DISTILL_PREFIX = "distill"  # loss terms distill.<task>


class Distiller:
    """The teacher network and the tasks it teaches; :meth:`loss` gives one term per task."""

    def __init__(self, teacher: MultitaskCenterNet, student: MultitaskCenterNet, weight: float,
                 source: str | Path = "the teacher") -> None:
        if weight <= 0:
            raise ValueError(f"distillation weight must be above 0, got {weight}")
        self.teacher = teacher.eval().requires_grad_(False)
        self.weight = weight
        self.tasks = [name for name in student.tasks if name in teacher.tasks]
        if not self.tasks:
            raise ConfigError(f"loss.distill: {source} has none of the tasks {list(student.tasks)} of this network")
        for name in self.tasks:
            mine, theirs = student.tasks[name].head_specs, teacher.tasks[name].head_specs
            if {k: s.channels for k, s in mine.items()} != {k: s.channels for k, s in theirs.items()}:
                raise ConfigError(f"loss.distill: the {name} head of {source} has outputs "
                                  f"{ {k: s.channels for k, s in theirs.items()} }, this network's "
                                  f"{ {k: s.channels for k, s in mine.items()} }: it can only teach the same "
                                  "categories and keypoints")

    @classmethod
    def from_weights(cls, weights: str | Path, student: MultitaskCenterNet, student_info: ModelInfo,
                     weight: float) -> Distiller:
        """The teacher from a run folder or weights file (as ``--init`` reads it)."""
        teacher, info = load_model(weights)
        if info.category_names != student_info.category_names:
            raise ConfigError(f"loss.distill: {weights} knows the categories {info.category_names}, this network "
                              f"{student_info.category_names}: the teacher must have the same ones")
        return cls(teacher, student, weight, source=weights)

    def loss(self, student: nn.Module, images: torch.Tensor, outputs: Mapping[str, torch.Tensor],
             targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``distill.<task>``, weighted: on the samples of the batch not labelled for that task
        (0 when there are none); ``student`` is the unwrapped network whose tasks compute it."""
        unlabelled = {name: targets[f"{name}.labelled"].to(images.device) == 0 for name in self.tasks}
        terms = {f"{DISTILL_PREFIX}.{name}": torch.zeros((), device=images.device) for name in self.tasks}
        if not any(mask.any() for mask in unlabelled.values()):
            return terms  # every sample is labelled for every task taught: no teacher pass needed
        if next(self.teacher.parameters()).device != images.device:
            self.teacher.to(images.device)
        with torch.no_grad():
            taught = {key: value.float() for key, value in self.teacher(images).items()}
        for name in self.tasks:
            if not unlabelled[name].any():
                continue
            mine = {key: value[unlabelled[name]] for key, value in outputs.items()}
            theirs = {key: value[unlabelled[name]] for key, value in taught.items()}
            terms[f"{DISTILL_PREFIX}.{name}"] = self.weight * student.tasks[name].distill(mine, theirs)
        return terms
