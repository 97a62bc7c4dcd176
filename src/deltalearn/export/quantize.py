"""Static INT8 quantization of an exported MCN graph with onnxruntime's quantization tools.

Weights are quantized per output channel (int8, symmetric), activations per tensor (uint8),
in the QDQ format that onnxruntime fuses into integer kernels (VNNI / AMX on x86). The
activation ranges are calibrated on letterboxed images from a folder, fed exactly as at
inference (uint8, the model's input size). Only the network up to the heads' hidden layers is
quantized: the nodes that no convolution depends on, which are the heads' output
convolutions and the decoding after them (sigmoid, peak test, top-K, gathers), stay in
float32, so that logits, sizes, offsets, scores, boxes and keypoints keep their precision.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static
)

from ..data.errors import DataError, DataWarning
from ..data.io import IMAGE_SUFFIXES, atomic_path, list_images, load_rgb
from ..data.sample import Sample, empty_targets
from ..data.transforms import Letterbox
from .onnx import INPUT_NAME, ExportInfo, read_metadata, set_metadata

CALIBRATION_IMAGES = 64  # default number of calibration images (the first, in sorted order)


def calibration_batches(folder: str | Path, size: int, limit: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """Up to ``limit`` images of ``folder`` letterboxed to ``size``, each uint8 [1, 3, size, size].
    Unreadable images are skipped with a warning; a folder without images is a DataError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "calibration folder not found")
    letterbox = Letterbox(size)
    batches: list[np.ndarray] = []
    for path in list_images(folder):
        if len(batches) == limit:
            break
        try:
            pixels = torch.from_numpy(load_rgb(path)).permute(2, 0, 1).contiguous()
        except DataError as error:
            warnings.warn(f"skipping calibration image: {error}", DataWarning, stacklevel=2)
            continue
        boxed = letterbox(Sample(image=pixels, **empty_targets(*pixels.shape[-2:])))
        batches.append(boxed.image[None].numpy())
    if not batches:
        raise DataError(folder, f"no readable images ({', '.join(IMAGE_SUFFIXES)}) to calibrate INT8 on")
    return batches


class ImageReader(CalibrationDataReader):
    """Feeds calibration batches to onnxruntime's calibrator, one per ``get_next``."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self.batches = batches
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.iterator, None)
        return None if batch is None else {INPUT_NAME: batch}

    def rewind(self) -> None:
        self.iterator: Iterator[np.ndarray] = iter(self.batches)


def float_nodes(proto: onnx.ModelProto) -> list[str]:
    """Names of the nodes that no convolution depends on: the heads' output convolutions
    (regressed sizes, offsets and logits need more than 8 bits) and all after them (decoding)."""
    producer = {output: node for node in proto.graph.node for output in node.output}
    upstream: set[int] = set()  # ids of the nodes that some Conv depends on
    stack = [producer[name] for node in proto.graph.node if node.op_type == "Conv"
             for name in node.input if name in producer]
    while stack:
        node = stack.pop()
        if id(node) not in upstream:
            upstream.add(id(node))
            stack += [producer[name] for name in node.input if name in producer]
    return [node.name for node in proto.graph.node if id(node) not in upstream]


def quantize_int8(fp32_path: str | Path, out_path: str | Path, batches: list[np.ndarray]) -> ExportInfo:
    """Write the static INT8 version of the exported graph ``fp32_path`` to ``out_path``,
    calibrated (min/max) on ``batches``; the metadata is carried over. Returns its ExportInfo."""
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    proto = onnx.load(str(fp32_path))
    metadata = read_metadata(proto)
    export = dataclasses.replace(ExportInfo.from_metadata(metadata), int8=True, calibration_images=len(batches))
    with tempfile.TemporaryDirectory() as work, atomic_path(out_path) as tmp:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(tmp), ImageReader(batches), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        nodes_to_exclude=float_nodes(onnx.load(str(prepared))))
        quantized = onnx.load(str(tmp))
        set_metadata(quantized, {**metadata, **export.metadata()})
        onnx.checker.check_model(quantized)
        onnx.save(quantized, str(tmp))
    return export
