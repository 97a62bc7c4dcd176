"""ONNX export of a Multitask CenterNet.

The graph takes what a camera gives: uint8 RGB images [B, 3, H, W], batch, height and width
dynamic (H and W multiples of 32); the ImageNet normalisation is inside it. It returns either
the raw head outputs, named as in PyTorch (``det.heatmap``, ``seg.logits``, ...), or, with
``decode=True``, the decoded results of every task named ``<task>.<field>`` after the fields
of the task's result dataclass (``det.boxes``, ``seg.labels``, ``pose.keypoints``, ...): the
peak test, top-K, boxes and keypoints then run inside the graph, in float32.

The file's ``metadata_props`` hold the model's :class:`ModelInfo` under the same key as
safetensors weights (``deltalearn.mcn``) and the :class:`ExportInfo` (``deltalearn.export``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from ..data.io import atomic_path
from ..mcn.backbones import normalize_images
from ..mcn.model import MultitaskCenterNet
from ..mcn.tasks import TASK_TYPES, Results, Task
from ..mcn.weights import ModelInfo

INPUT_NAME = "images"  # the graph's one input: uint8 [B, 3, H, W]
EXPORT_KEY = "deltalearn.export"  # metadata_props entry of the ExportInfo
OPSET = 17  # ONNX opset of the exported graphs
EXPORT_BATCH = 2  # batch of the tracing input: not 1, so that no size-1 broadcast gets baked in
INPUT_MULTIPLE = 32  # H and W must be multiples of this (the backbones' deepest stride)
TRACE_CELLS = max(task.min_cells for task in TASK_TYPES.values())  # output cells of every tracing input


class ExportError(ValueError):
    """A model or file that cannot be exported as asked."""


@dataclass
class ExportInfo:
    """How an ONNX file was made: what its outputs are and what inputs it accepts."""

    decoded: bool  # outputs are decoded results (True) or raw head outputs (False)
    outputs: list[str]  # output names, in graph order
    output_stride: int  # input pixels per cell of the raw outputs
    min_cells: int  # least (H / stride) * (W / stride) the graph accepts (its top-K is fixed)
    int8: bool = False  # weights and activations quantized to INT8
    calibration_images: int = 0  # images the INT8 ranges were calibrated on

    def metadata(self) -> dict[str, str]:
        return {EXPORT_KEY: json.dumps(dataclasses.asdict(self))}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> ExportInfo:
        return cls(**json.loads(metadata[EXPORT_KEY]))


def decode_batched(model: MultitaskCenterNet, outputs: Mapping[str, torch.Tensor]) -> dict[str, Results]:
    """Each task's results for the whole batch ([B, ...] fields): the form a graph returns.
    The same decoding and defaults as ``model.decode``, which splits them per image."""
    return {name: task.decode_batched(outputs, model.output_stride) for name, task in model.tasks.items()}


def flatten_results(results: Mapping[str, Results]) -> dict[str, torch.Tensor]:
    """{"det": Detections(boxes, ...)} -> {"det.boxes": ..., "det.scores": ..., ...}."""
    return {f"{task}.{field.name}": getattr(found, field.name)
            for task, found in results.items() for field in dataclasses.fields(found)}  # type: ignore[arg-type]


def unflatten_results(tensors: Mapping[str, torch.Tensor], tasks: Mapping[str, Task]) -> dict[str, Results]:
    """The inverse of :func:`flatten_results` for the named ``tasks``, into their result types."""
    return {name: task.result_type(**{field.name: tensors[f"{name}.{field.name}"]  # type: ignore[call-arg]
                                      for field in dataclasses.fields(task.result_type)})  # type: ignore[arg-type]
            for name, task in tasks.items()}


class ExportGraph(nn.Module):
    """What is exported: uint8 images [B, 3, H, W] -> named raw outputs, or decoded results."""

    def __init__(self, model: MultitaskCenterNet, decode: bool = False) -> None:
        super().__init__()
        self.model = model
        self.decode = decode

    def named_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.model(normalize_images(images))
        return flatten_results(decode_batched(self.model, outputs)) if self.decode else outputs

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.named_outputs(images).values())


def min_cells(model: MultitaskCenterNet, decode: bool) -> int:
    """Least output cells a graph accepts: the largest top-K of its tasks' decoding, which is
    traced as a constant (1 for raw outputs)."""
    return max(task.min_cells for task in model.tasks.values()) if decode else 1


def trace_side(output_stride: int, image_size: int, cells: int = TRACE_CELLS) -> int:
    """Side of the tracing input: the model's image size, but large enough that a decoding's
    top-K (traced as a constant) has all its ``cells``."""
    least = INPUT_MULTIPLE * math.ceil(math.sqrt(cells) * output_stride / INPUT_MULTIPLE)
    return max(image_size, least)


def example_images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Reproducible random uint8 images [batch, 3, height, width]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=generator)


def dynamic_axes(graph: ExportGraph, side: int, stride: int) -> dict[str, dict[int, str]]:
    """Named dynamic axes of the input and every output, found by running the graph on two
    input shapes: an axis whose length changes with batch, height or width is dynamic."""
    with torch.no_grad():
        small = {k: v.shape for k, v in graph.named_outputs(example_images(1, side, side + INPUT_MULTIPLE)).items()}
        large = {k: v.shape for k, v in graph.named_outputs(
            example_images(3, side + INPUT_MULTIPLE, side + 3 * INPUT_MULTIPLE)).items()}
    names = {(1, 3): "batch", (side, side + INPUT_MULTIPLE): "height",
             (side + INPUT_MULTIPLE, side + 3 * INPUT_MULTIPLE): "width",
             (side // stride, (side + INPUT_MULTIPLE) // stride): "grid_height",
             ((side + INPUT_MULTIPLE) // stride, (side + 3 * INPUT_MULTIPLE) // stride): "grid_width"}
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    for key in small:
        changed = [axis for axis, (a, b) in enumerate(zip(small[key], large[key])) if a != b]
        axes[key] = {axis: names.get((small[key][axis], large[key][axis]), f"{key}.dim{axis}") for axis in changed}
    return axes


def export_onnx(model: MultitaskCenterNet, info: ModelInfo, path: str | Path, decode: bool = False,
                opset: int = OPSET) -> ExportInfo:
    """Write ``model`` (float32, eval mode) as an ONNX file with its ``info`` in the metadata;
    ``onnx.checker`` (full check, with shape inference) must pass. Returns the ExportInfo."""
    model = model.float().eval()
    stride = model.output_stride
    graph = ExportGraph(model, decode).eval()  # eval: the exporter restores the wrapper's mode to all modules
    side = trace_side(stride, info.config.data.image_size)
    axes = dynamic_axes(graph, side, stride)
    names = [key for key in axes if key != INPUT_NAME]
    export = ExportInfo(decoded=decode, outputs=names, output_stride=stride, min_cells=min_cells(model, decode))
    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # the decoding's min(k, cells) is traced as the constant k: ExportInfo.min_cells says so
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(graph, (example_images(EXPORT_BATCH, side, side),), str(tmp), input_names=[INPUT_NAME],
                          output_names=names, dynamic_axes=axes, opset_version=opset, dynamo=False)
        proto = onnx.load(str(tmp))
        set_metadata(proto, {**info.metadata(), **export.metadata()})
        proto.doc_string = f"deltalearn Multitask CenterNet, tasks {list(model.tasks)}"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
    return export


def set_metadata(proto: onnx.ModelProto, entries: Mapping[str, str]) -> None:
    """Set (replace) string entries of ``proto.metadata_props``."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    for key, value in [*kept, *entries.items()]:
        proto.metadata_props.add(key=key, value=value)


def read_metadata(proto: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}
