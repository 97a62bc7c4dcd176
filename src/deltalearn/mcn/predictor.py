"""Batched inference behind one interface, whatever runs the network.

A :class:`Predictor` turns letterboxed samples into decoded results per task and COCO
results entries. :class:`TorchPredictor` runs the network in PyTorch; the onnxruntime
predictor of :mod:`deltalearn.export.runtime` implements the same interface, so that
prediction, evaluation and drawing take either.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..data.sample import Sample
from ..engine.fuse import fold_batchnorms
from ..engine.precision import Precision, autocast, prepare_model, resolve_precision
from .backbones import normalize_images
from .model import MultitaskCenterNet
from .tasks import Task
from .weights import ModelInfo


class Predictor:
    """Samples in, decoded results out. Subclasses set ``info``, ``tasks`` and ``output_stride``
    and implement :meth:`outputs`; decoding, per-image splitting and COCO results are shared."""

    info: ModelInfo
    tasks: Mapping[str, Task]  # the model's tasks, which decode and write COCO results
    output_stride: int  # input pixels per cell of the raw outputs

    def outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network's named outputs for uint8 images [B, 3, H, W]."""
        raise NotImplementedError

    def decode_outputs(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, list[Any]]:
        """Per task, per image results of :meth:`outputs` (raw head outputs by default)."""
        return {name: task.decode(outputs, self.output_stride) for name, task in self.tasks.items()}

    def decode(self, samples: Sequence[Sample]) -> dict[str, list[Any]]:
        """Per task, per image decoded results (input-image pixels) of ``samples``."""
        return self.decode_outputs(self.outputs(torch.stack([sample.image for sample in samples])))

    def coco_results(self, decoded: Mapping[str, list[Any]], samples: Sequence[Sample],
                     min_score: float = 0.0) -> dict[str, list[dict]]:
        """COCO results entries in original-image coordinates, per task."""
        return {name: self.tasks[name].to_coco(results, samples, self.info.category_ids, min_score)
                for name, results in decoded.items()}


class TorchPredictor(Predictor):
    """A network in PyTorch, at the precision the device supports best (or the one asked for).

    It runs an eval-mode copy of ``model`` whose batch norms are folded into the convolutions
    before them (``fold_norms``; the outputs stay equal to 1e-4 of their scale, or nothing is
    folded), in the precision's memory layout; ``model`` itself is left as it was."""

    def __init__(self, model: MultitaskCenterNet, info: ModelInfo, precision: str | Precision = "auto",
                 device: torch.device | str | None = None, fold_norms: bool = True) -> None:
        self.info = info
        self.precision = precision if isinstance(precision, Precision) else resolve_precision(precision, device, model)
        size = info.config.data.image_size
        example = torch.randn(1, 3, size, size, device=self.precision.device)
        if fold_norms:
            model, self.folded_norms = fold_batchnorms(model.to(self.precision.device), example)
        else:
            model, self.folded_norms = copy.deepcopy(model).to(self.precision.device).eval(), 0
        self.model = prepare_model(model, self.precision)
        self.tasks = dict(model.tasks.items())
        self.output_stride = model.output_stride

    @torch.no_grad()
    def outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw float32 outputs of uint8 images [B, 3, S, S]."""
        images = normalize_images(images.to(self.precision.device))
        if self.precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision):
            outputs = self.model(images)
        return {key: value.float() for key, value in outputs.items()}
