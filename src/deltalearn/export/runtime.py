"""onnxruntime inference of exported MCN models, as a :class:`deltalearn.mcn.predictor.Predictor`.

``OnnxPredictor(path)`` reads the model's :class:`ModelInfo` from the ONNX metadata, so that
prediction and evaluation take it as they take the PyTorch predictor. Raw-output graphs are
decoded by the tasks' PyTorch decoding (the same code as in eager mode); graphs exported
with decoding return final results directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from ..engine.checkpoint import CheckpointError
from ..mcn.model import MultitaskCenterNet
from ..mcn.predictor import Predictor, TorchPredictor
from ..mcn.weights import METADATA_KEY, ModelInfo, build_model, load_model
from .onnx import EXPORT_KEY, INPUT_MULTIPLE, INPUT_NAME, ExportGraph, ExportInfo, example_images, unflatten_results

EXPORT_TOLERANCE = 1e-4  # onnxruntime fp32 vs eager: largest |difference| / max(1, largest |value|) of an output
DECISION_TOLERANCE = 1e-2  # decoded results: share of elements allowed to differ (decisions flipped near ties)


def load_predictor(weights: str | Path, precision: str = "auto") -> Predictor:
    """A predictor for PyTorch weights (run folder or .safetensors) or an exported ``.onnx``
    model, which runs in onnxruntime (``precision`` applies to PyTorch weights)."""
    if Path(weights).suffix.lower() == ".onnx":
        return OnnxPredictor(weights)
    model, info = load_model(weights)
    return TorchPredictor(model, info, precision=precision)


def open_session(path: str | Path, threads: int | None = None, idle_after_run: bool = False) -> ort.InferenceSession:
    """An onnxruntime CPU session with ``threads`` intra-op threads (None: one per core). Its
    threads spin between the operators of a run; ``idle_after_run`` stops them spinning at the
    end of each run, so that sessions run one after another (a composition of networks) do not
    spin against each other. A missing or unreadable file is a CheckpointError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: ONNX file not found")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    if idle_after_run:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own InvalidProtobuf, Fail, InvalidGraph, ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable ONNX model ({reason})") from None


class OnnxPredictor(Predictor):
    """Batched inference through onnxruntime: letterboxed samples in, decoded results out."""

    def __init__(self, path: str | Path, threads: int | None = None, idle_after_run: bool = False) -> None:
        self.path = Path(path)
        self.session = open_session(self.path, threads, idle_after_run)
        metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if METADATA_KEY not in metadata or EXPORT_KEY not in metadata:
            raise CheckpointError(f"{self.path}: not an MCN model made by 'deltalearn mcn export' (its metadata has "
                                  f"no '{METADATA_KEY}' and '{EXPORT_KEY}' entries)")
        self.info = ModelInfo.from_metadata(metadata, self.path)
        self.export = ExportInfo.from_metadata(metadata)
        self.info.config.model.pretrained = False  # the tasks are built only for decoding and COCO results
        model = build_model(self.info, backbone_weights=False)
        self.tasks = dict(model.tasks.items())
        self.output_stride = model.output_stride
        names = [output.name for output in self.session.get_outputs()]
        if names != self.export.outputs:
            raise CheckpointError(f"{self.path}: the graph's outputs {names} are not the exported "
                                  f"{self.export.outputs}; was the file edited?")

    def outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The graph's named outputs for uint8 images [B, 3, H, W] (H, W multiples of 32): raw
        float32 head outputs, or decoded result fields if the graph decodes."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.path}: expects uint8 images [B, 3, H, W], got {images.dtype} "
                             f"{list(images.shape)}")
        height, width = images.shape[-2:]
        cells = (height // self.export.output_stride) * (width // self.export.output_stride)
        if height % INPUT_MULTIPLE or width % INPUT_MULTIPLE or cells < self.export.min_cells:
            raise ValueError(f"{self.path}: input {height}x{width} px: height and width must be multiples of "
                             f"{INPUT_MULTIPLE} giving at least {self.export.min_cells} output cells")
        arrays = self.session.run(None, {INPUT_NAME: np.ascontiguousarray(images.cpu().numpy())})
        return {name: torch.from_numpy(array) for name, array in zip(self.export.outputs, arrays)}

    def decode_outputs(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, list[Any]]:
        """Per task, per image results: the tasks' decoding of raw outputs, or a decoding graph's own."""
        if not self.export.decoded:
            return super().decode_outputs(outputs)
        return {name: found.unbind() for name, found in unflatten_results(outputs, self.tasks).items()}


def output_differences(reference: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], decoded: bool,
                       min_score: float = 0.1) -> dict[str, float]:
    """Per output, how far ``found`` (onnxruntime) is from ``reference`` (eager PyTorch).

    Raw outputs: the largest |difference| relative to the largest |value| (at least 1).
    Decoded results: the share of elements that differ by more than EXPORT_TOLERANCE of
    that scale, since rounding can flip a discrete decision near a tie (the order of equal
    peaks, a keypoint's snap, an argmax); per-object outputs ``<task>.<field>`` [B, K, ...]
    count only where the reference ``<task>.scores`` >= ``min_score``.
    """
    differences: dict[str, float] = {}
    for name, expected in reference.items():
        actual = found[name].to(expected.device)
        if actual.shape != expected.shape:
            raise ValueError(f"output {name}: shape {list(actual.shape)}, expected {list(expected.shape)}")
        scores = reference.get(f"{name.split('.')[0]}.scores")
        if decoded and scores is not None and expected.shape[:2] == scores.shape:
            keep = scores >= min_score
            expected, actual = expected[keep], actual[keep]
        if expected.numel() == 0:
            differences[name] = 0.0
            continue
        scale = max(1.0, float(expected.abs().max()))
        error = (expected.double() - actual.double()).abs() / scale
        differences[name] = float((error > EXPORT_TOLERANCE).double().mean() if decoded else error.max())
    return differences


def within_tolerance(differences: Mapping[str, float], decoded: bool) -> bool:
    """Whether :func:`output_differences` stay within EXPORT_TOLERANCE (raw outputs) or
    DECISION_TOLERANCE (decoded results)."""
    return all(value <= (DECISION_TOLERANCE if decoded else EXPORT_TOLERANCE) for value in differences.values())


def verify_export(model: MultitaskCenterNet, path: str | Path,
                  shapes: Sequence[tuple[int, int, int]]) -> dict[str, float]:
    """The largest :func:`output_differences` between the ONNX file at ``path`` in onnxruntime
    and ``model`` in eager PyTorch, over example images of each (batch, height, width) in
    ``shapes``; raises ValueError when they exceed the tolerance."""
    predictor = OnnxPredictor(path)
    graph = ExportGraph(model.eval(), predictor.export.decoded)
    worst: dict[str, float] = {}
    for batch, height, width in shapes:
        images = example_images(batch, height, width)
        with torch.no_grad():
            reference = graph.named_outputs(images)
        differences = output_differences(reference, predictor.outputs(images), predictor.export.decoded)
        if not within_tolerance(differences, predictor.export.decoded):
            raise ValueError(f"{path}: onnxruntime disagrees with PyTorch on {batch}x3x{height}x{width} images: "
                             + ", ".join(f"{k} {v:.2e}" for k, v in differences.items()))
        worst = {k: max(v, worst.get(k, 0.0)) for k, v in differences.items()}
    return worst
