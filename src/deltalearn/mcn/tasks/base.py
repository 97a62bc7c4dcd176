"""The task unit: one head, its targets, its loss, its decoding and its COCO results."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ...data.sample import Sample
from ..losses import gated_l1, heatmap_distillation, softmax_distillation

HEAD_KERNEL = 3  # the hidden conv of every head, as CenterNet
# where a task's hidden 3x3 conv sits: one per output (CenterNet's), or one per task that all
# of the task's 1x1 output convs share (a third of the head cost for detection and pose)
HEAD_TRUNKS = ("per_output", "per_task")
# the hidden 3x3 conv itself: dense (CenterNet's), or depthwise-separable (a depthwise 3x3 then a
# 1x1, as MobileNet factorises it: about 8x fewer multiply-adds at 64 channels)
HEAD_CONVS = ("dense", "separable")
DISTILL_GATE = 0.1  # teacher heatmap cells below this carry no weight in regression distillation


@dataclass(frozen=True)
class HeadSpec:
    """One named output of a task head."""

    channels: int  # output channels of the final 1x1 conv
    bias: float = 0.0  # initial bias of that conv, e.g. focal_prior_bias(0.1) for heatmaps


def make_trunk(in_channels: int, head_channels: int, conv: str = "dense") -> nn.Sequential:
    """The hidden layer of a head: 3x3 conv -> ReLU; ``conv="separable"``: depthwise 3x3 ->
    1x1 -> ReLU."""
    if conv not in HEAD_CONVS:
        raise ValueError(f"head_conv must be one of {HEAD_CONVS}, got {conv!r}")
    padding = HEAD_KERNEL // 2
    if conv == "separable":
        return nn.Sequential(nn.Conv2d(in_channels, in_channels, HEAD_KERNEL, padding=padding, groups=in_channels),
                             nn.Conv2d(in_channels, head_channels, kernel_size=1), nn.ReLU(inplace=True))
    return nn.Sequential(nn.Conv2d(in_channels, head_channels, kernel_size=HEAD_KERNEL, padding=padding),
                         nn.ReLU(inplace=True))


def make_output(head_channels: int, spec: HeadSpec) -> nn.Conv2d:
    """The 1x1 conv to ``spec.channels``, its bias set to ``spec.bias``."""
    final = nn.Conv2d(head_channels, spec.channels, kernel_size=1)
    nn.init.constant_(final.bias, spec.bias)
    return final


def make_head(in_channels: int, head_channels: int, spec: HeadSpec, conv: str = "dense") -> nn.Sequential:
    """CenterNet's head: 3x3 conv -> ReLU -> 1x1 conv to ``spec.channels``."""
    return nn.Sequential(*make_trunk(in_channels, head_channels, conv), make_output(head_channels, spec))


class Results:
    """Mixin of decoded-result dataclasses: split a batched result into one per image."""

    def unbind(self) -> list[Any]:
        """Per-image results from a result whose fields all have a leading batch dimension."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        batch = next(iter(fields.values())).shape[0]
        return [type(self)(**{k: v[i] for k, v in fields.items()}) for i in range(batch)]


class Task(nn.Module):
    """Base of the tasks: owns the head and everything that depends on its outputs.

    Subclasses set ``name`` (the prefix of their output, target and loss keys), ``requires``
    (names of tasks whose outputs they read), ``default_term_weights`` (relative weight of
    each loss term), ``result_type`` (the dataclass of their decoded results, whose fields
    name the outputs of a decoding ONNX graph) and ``min_cells`` (the output cells their
    batched decoding needs), and implement ``encode_sample``, ``loss_terms``,
    ``decode_batched``, ``to_coco`` and ``oracle_outputs``.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    default_term_weights: ClassVar[dict[str, float]] = {}
    result_type: ClassVar[type[Results]]
    min_cells: ClassVar[int] = 1  # least (H / stride) * (W / stride) of decode_batched (its top-K)
    requirement_reason: ClassVar[str] = "it reads their outputs"  # why it needs the tasks in ``requires``
    # targets that make a sample count for nothing in the loss, and their fill values: loss
    # weights and masks 0, heatmaps 0 (no positives), label maps the ignore index
    ignored_targets: ClassVar[dict[str, float]] = {}
    # how :meth:`distill` matches each output to a trained network's: output -> (rule, gate,
    # loss term whose weight it takes). Rules: "heatmap" (sigmoid logits), "softmax" (class
    # logits), "regression" (L1 where the output ``gate`` names, a sigmoid heatmap, sees objects)
    distilled: ClassVar[dict[str, tuple[str, str | None, str]]] = {}

    def __init__(self, heads: Mapping[str, HeadSpec], in_channels: int, head_channels: int = 64,
                 weight: float = 1.0, term_weights: Mapping[str, float] | None = None,
                 head_trunk: str = "per_output", head_conv: str = "dense") -> None:
        super().__init__()
        if head_trunk not in HEAD_TRUNKS:
            raise ValueError(f"head_trunk must be one of {HEAD_TRUNKS}, got {head_trunk!r}")
        unknown = set(term_weights or {}) - set(self.default_term_weights)
        if unknown:
            raise ValueError(f"task '{self.name}': unknown loss terms {sorted(unknown)}, "
                             f"known: {sorted(self.default_term_weights)}")
        self.weight = weight  # share of this task in the multitask loss
        self.term_weights = {**self.default_term_weights, **(term_weights or {})}
        self.head_specs = dict(heads)
        if head_trunk == "per_task":
            self.trunk: nn.Module = make_trunk(in_channels, head_channels, head_conv)
            self.heads = nn.ModuleDict({key: make_output(head_channels, spec) for key, spec in heads.items()})
        else:  # no parameters of its own: the state dict keeps CenterNet's layout
            self.trunk = nn.Identity()
            self.heads = nn.ModuleDict({key: make_head(in_channels, head_channels, spec, head_conv)
                                        for key, spec in heads.items()})

    def key(self, name: str) -> str:
        """The task-prefixed key of an output, target or loss term, e.g. ``det.heatmap``."""
        return f"{self.name}.{name}"

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs from the neck's ``features`` [B, C, h, w], keyed ``<task>.<output>``."""
        shared = self.trunk(features)
        return {self.key(name): head(shared) for name, head in self.heads.items()}

    @classmethod
    def check_requirements(cls, names: Collection[str]) -> None:
        """Raise ValueError when a task this one reads from is not among the task ``names``."""
        missing = [name for name in cls.requires if name not in names]
        if missing:
            needed = " and ".join(f"task '{name}'" for name in missing)
            raise ValueError(f"task '{cls.name}' needs {needed} in the same model "
                             f"({cls.name} needs {', '.join(missing)}: {cls.requirement_reason})")

    def check_tasks(self, tasks: Mapping[str, Task]) -> None:
        """Raise ValueError when this task cannot work beside the other ``tasks`` of a model."""
        self.check_requirements(tasks)

    def encode(self, samples: Sequence[Sample], output_stride: int) -> dict[str, torch.Tensor]:
        """Batched training targets of ``samples`` (stacked per-sample targets), and
        ``<task>.labelled`` [B]: 1 for the samples labelled for this task. The targets of the
        other samples carry no loss weight (:meth:`ignore`)."""
        per_sample = []
        for sample in samples:
            targets = self.encode_sample(sample, output_stride)
            per_sample.append(targets if sample.labelled_for(self.name) else self.ignore(targets))
        batch = {key: torch.stack([t[key] for t in per_sample]) for key in per_sample[0]}
        batch[self.key("labelled")] = torch.tensor([float(s.labelled_for(self.name)) for s in samples])
        return batch

    def ignore(self, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The targets of a sample that is not labelled for this task: every target named in
        ``ignored_targets`` set to its fill value, so that the sample adds nothing to the loss."""
        return {key: torch.full_like(value, self.ignored_targets[key.split(".", 1)[1]])
                if key.split(".", 1)[1] in self.ignored_targets else value for key, value in targets.items()}

    def encode_sample(self, sample: Sample, output_stride: int) -> dict[str, torch.Tensor]:
        """Targets of one sample, keyed ``<task>.<target>``."""
        raise NotImplementedError

    def loss(self, outputs: Mapping[str, torch.Tensor],
             targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weighted loss terms keyed ``<task>.<term>``; terms of weight 0 are not computed."""
        active = {term: w * self.weight for term, w in self.term_weights.items() if w * self.weight != 0}
        terms = self.loss_terms(outputs, targets, set(active))
        return {self.key(term): active[term] * value for term, value in terms.items()}

    def loss_terms(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                   terms: set[str]) -> dict[str, torch.Tensor]:
        """Unweighted loss terms named in ``terms``, keyed by term name."""
        raise NotImplementedError

    def distill(self, outputs: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The loss that keeps this task's ``outputs`` close to a trained network's (``teacher``,
        the same keys): each output by its ``distilled`` rule, at its loss term's weight, summed."""
        total = torch.zeros((), device=next(iter(outputs.values())).device)
        for name, (rule, gate, term) in self.distilled.items():
            weight = self.term_weights[term] * self.weight
            if weight == 0:
                continue
            student, target = outputs[self.key(name)], teacher[self.key(name)]
            if rule == "heatmap":
                loss = heatmap_distillation(student, target)
            elif rule == "softmax":
                loss = softmax_distillation(student, target)
            else:
                seen = torch.sigmoid(teacher[gate].float()).amax(dim=1, keepdim=True)
                loss = gated_l1(student, target, seen * (seen > DISTILL_GATE))
            total = total + weight * loss
        return total

    def decode_batched(self, outputs: Mapping[str, torch.Tensor], output_stride: int, **options: Any) -> Results:
        """Results of the whole batch (fields [B, ...]) in input-image pixels, from export-friendly
        ops, so that the same code runs eagerly and inside an ONNX graph."""
        raise NotImplementedError

    def decode(self, outputs: Mapping[str, torch.Tensor], output_stride: int, **options: Any) -> list[Any]:
        """Per-image results (``result_type``) in input-image pixels."""
        return self.decode_batched(outputs, output_stride, **options).unbind()

    def to_coco(self, results: Sequence[Any], samples: Sequence[Sample],
                category_ids: Sequence[int], min_score: float = 0.0) -> list[dict]:
        """COCO results entries in original-image coordinates, one list for all images."""
        raise NotImplementedError

    def oracle_outputs(self, targets: Mapping[str, torch.Tensor], output_stride: int) -> dict[str, torch.Tensor]:
        """The raw outputs of a perfect network for ``targets``: decoding them measures the
        ceiling that the output grid and the encoding alone put on the metric."""
        raise NotImplementedError


def boxes_to_original(boxes: torch.Tensor, sample: Sample) -> torch.Tensor:
    """xyxy input-pixel ``boxes`` [K, 4] -> original-image pixels, clipped to the original image."""
    corners = sample.to_original(boxes.reshape(-1, 2, 2)).reshape(-1, 4)
    height, width = sample.orig_size
    if height > 0 and width > 0:
        limits = corners.new_tensor([width, height, width, height])
        corners = torch.minimum(corners.clamp(min=0.0), limits)
    return corners


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """[K, 4] corners -> [K, 4] (x, y, width, height), COCO's box format."""
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)
