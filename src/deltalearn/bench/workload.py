"""What the benchmark runs: its settings, the two sides' networks and inputs, predictors and exports."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.synth import make_image
from ..export.onnx import export_onnx
from ..export.quantize import quantize_int8
from ..export.runtime import OnnxPredictor
from ..mcn.config import MCNConfig
from ..mcn.predictor import Predictor, TorchPredictor
from ..mcn.tasks import TASK_TYPES
from ..mcn.weights import ModelInfo, build_model, person_label_of

PATHS = ("eager_fp32", "eager_bf16", "onnxruntime_fp32", "onnxruntime_int8")
CALIBRATION_IMAGES = 8  # synthetic images that calibrate the INT8 graphs


@dataclass
class BenchSettings:
    size: int = 512  # input side in px (square, a multiple of 32)
    batch: int = 1  # images per forward pass
    runs: int = 30  # timed runs of each side per path
    warmup: int = 5  # untimed runs first
    paths: Sequence[str] = PATHS  # runtime paths to time
    memory: bool = True  # also measure peak memory (one fresh process per path and side)
    threads: int = field(default_factory=torch.get_num_threads)  # intra-op threads, torch and onnxruntime


def single_task_sets(tasks: Sequence[str]) -> list[list[str]]:
    """The task lists of the single-task networks that do what a network with ``tasks`` does: each
    task with the tasks it reads from (pose brings its own person detection)."""
    return [[*TASK_TYPES[task].requires, task] for task in tasks]


def network_infos(config: MCNConfig, size: int) -> tuple[ModelInfo, list[ModelInfo]]:
    """The multitask network of ``config`` and its single-task composition, at input ``size``.
    Categories: ``config.data.categories``, else person only (the paper's COCO setting); the
    pose network detects persons only."""
    categories = list(config.data.categories) or ["person"]

    def info(tasks: list[str], names: list[str]) -> ModelInfo:
        network = copy.deepcopy(config)
        network.model.tasks, network.model.pretrained, network.data.image_size = list(tasks), False, size
        return ModelInfo(network, category_ids=list(range(1, len(names) + 1)), category_names=list(names),
                         person_label=person_label_of(names))

    singles = [info(tasks, ["person"] if "pose" in tasks else categories)
               for tasks in single_task_sets(config.model.tasks)]
    return info(list(config.model.tasks), categories), singles


def bench_images(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 [batch, 3, size, size] synthetic scenes (persons, vehicles, balls)."""
    return torch.stack([torch.from_numpy(make_image(seed, i, size)[0]).permute(2, 0, 1) for i in range(batch)])


def open_predictors(path: str, infos: Sequence[ModelInfo], models: Sequence[torch.nn.Module] | None = None,
                    files: Sequence[Path] | None = None, threads: int | None = None) -> list[Predictor]:
    """One predictor per network for a runtime ``path``: PyTorch ones of ``models`` (built from
    ``infos`` with random weights if None), or onnxruntime ones of the exported ``files``."""
    if path.startswith("onnxruntime"):
        # idle after each run: the idle sessions of a composition must not spin against the running one
        return [OnnxPredictor(file, threads=threads, idle_after_run=True) for file in files or []]
    precision = "bf16" if path == "eager_bf16" else "fp32"
    if models is None:
        models = [build_model(info).eval() for info in infos]
    return [TorchPredictor(model, info, precision=precision, device="cpu") for model, info in zip(models, infos)]


@dataclass
class Workload:
    """What every path runs: the networks of each side, their input, where exports go."""

    sides: dict[str, list[ModelInfo]]  # "multitask": [one], "composition": [one per task]
    models: dict[str, list[torch.nn.Module]]  # the same networks, float32, random weights
    images: torch.Tensor  # uint8 [batch, 3, size, size]
    folder: Path  # ONNX exports
    calibration: list[np.ndarray]  # INT8 calibration batches


def export_graphs(path: str, work: Workload, side: str, decode: bool = False) -> list[Path]:
    """Export the networks of ``side`` (raw outputs, or with decoding in the graph) to the
    workload's folder, once; for the INT8 path quantize them."""
    files = []
    for index, (info, model) in enumerate(zip(work.sides[side], work.models[side])):
        file = work.folder / f"{side}_{index}{'_decoded' if decode else ''}.onnx"
        if not file.is_file():
            export_onnx(model, info, file, decode=decode)
        if path == "onnxruntime_int8":
            int8 = file.with_suffix(".int8.onnx")
            if not int8.is_file():
                quantize_int8(file, int8, work.calibration)
            file = int8
        files.append(file)
    return files
