"""Trained MCN models: packaging with their config, loading, batched inference, evaluation."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..config import ConfigError, from_dict, to_dict
from ..data.keypoints import KEYPOINT_NAMES, SKELETON
from ..data.sample import Sample
from ..engine import checkpoint as ckpt
from ..engine.precision import Precision, autocast, prepare_model, resolve_precision
from ..evaluation.coco import evaluate_coco
from ..evaluation.masks import ConfusionMatrix, segmentation_metrics
from .backbones import normalize_images
from .config import MCNConfig
from .data import EvalItem
from .model import MultitaskCenterNet, build_mcn
from .tasks.segmentation import labels_to_original

METADATA_KEY = "deltalearn.mcn"  # safetensors header entry: the model's config and categories
PREDICT_SCORE = 0.3  # default score threshold of drawings and predictions.json


@dataclass
class ModelInfo:
    """What a weights file needs besides tensors: the config and the dataset's categories."""

    config: MCNConfig
    category_ids: list[int]  # label -> COCO category id
    category_names: list[str]
    person_label: int = 0  # label of the category with keypoints
    keypoint_names: list[str] = field(default_factory=lambda: list(KEYPOINT_NAMES))
    skeleton: list[list[int]] = field(default_factory=lambda: [list(limb) for limb in SKELETON])

    def metadata(self) -> dict[str, str]:
        info = {
            "config": to_dict(self.config),
            "category_ids": self.category_ids,
            "category_names": self.category_names,
            "person_label": self.person_label,
            "keypoint_names": self.keypoint_names,
            "skeleton": self.skeleton,
        }
        return {METADATA_KEY: json.dumps(info)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], path: Path) -> ModelInfo:
        if METADATA_KEY not in metadata:
            raise ckpt.CheckpointError(f"{path}: not an MCN weights file (no '{METADATA_KEY}' metadata)")
        info = json.loads(metadata[METADATA_KEY])
        try:
            config = from_dict(MCNConfig, info.pop("config"))
        except ConfigError as error:
            raise ckpt.CheckpointError(f"{path}: its config is not valid here: {error}") from None
        return cls(config=config, **info)

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)


def person_label_of(category_names: Sequence[str], keypoint_category: int | None = None) -> int:
    """The label whose persons carry keypoints: the keypoint category, else 'person', else 0."""
    if keypoint_category is not None:
        return keypoint_category
    return list(category_names).index("person") if "person" in category_names else 0


def build_model(info: ModelInfo) -> MultitaskCenterNet:
    """The network that ``info.config`` describes, from random (or timm pretrained) weights."""
    model_cfg = info.config.model
    return build_mcn(
        model_cfg.backbone,
        tasks=tuple(model_cfg.tasks),
        num_classes=info.num_classes,
        person_label=info.person_label,
        head_channels=model_cfg.head_channels,
        neck_channels=model_cfg.neck_channels,
        pretrained=model_cfg.pretrained,
        pose_offsets=model_cfg.pose_offsets,
        head_trunk=model_cfg.head_trunk,
        box_regression=model_cfg.box_regression,
        pose_regression=model_cfg.pose_regression,
        loss_weights=info.config.loss.weights(model_cfg.tasks),
    )


def load_model(weights: str | Path, device: torch.device | str = "cpu") -> tuple[MultitaskCenterNet, ModelInfo]:
    """A trained model from a run folder (best, else last weights) or a weights file."""
    path = ckpt.find_weights(weights)
    info = ModelInfo.from_metadata(ckpt.weights_metadata(path), path)
    info.config.model.pretrained = False  # the file has every weight
    model = build_model(info)
    ckpt.load_weights(model, path)
    return model.to(device).eval(), info


def load_predictor(weights: str | Path, precision: str = "auto") -> Predictor:
    """A predictor for PyTorch weights (run folder or .safetensors) or an exported ``.onnx``
    model, which runs in onnxruntime."""
    if Path(weights).suffix.lower() == ".onnx":
        from ..export.runtime import OnnxPredictor

        return OnnxPredictor(weights)
    model, info = load_model(weights)
    return Predictor(model, info, precision=precision)


class Predictor:
    """Batched inference: letterboxed samples in, decoded results per task out."""

    def __init__(self, model: MultitaskCenterNet, info: ModelInfo, precision: str | Precision = "auto",
                 device: torch.device | str | None = None) -> None:
        self.info = info
        self.precision = precision if isinstance(precision, Precision) else resolve_precision(precision, device, model)
        self.model = prepare_model(model.to(self.precision.device).eval(), self.precision)

    @torch.no_grad()
    def outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw float32 outputs of uint8 images [B, 3, S, S]."""
        images = normalize_images(images.to(self.precision.device))
        if self.precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision):
            outputs = self.model(images)
        return {key: value.float() for key, value in outputs.items()}

    def decode(self, samples: Sequence[Sample]) -> dict[str, list[Any]]:
        """Per task, per image decoded results (input-image pixels) of ``samples``."""
        outputs = self.outputs(torch.stack([sample.image for sample in samples]))
        return {name: [r for r in results] for name, results in self.model.decode(outputs).items()}

    def coco_results(self, decoded: dict[str, list[Any]], samples: Sequence[Sample],
                     min_score: float = 0.0) -> dict[str, list[dict]]:
        """COCO results entries in original-image coordinates, per task."""
        return {name: self.model.tasks[name].to_coco(results, samples, self.info.category_ids, min_score)
                for name, results in decoded.items()}


def evaluate(predictor: Predictor, batches: Iterable[list[EvalItem]], gt: dict, progress: bool = False,
             total: int | None = None) -> dict[str, float]:
    """The metrics of the enabled tasks on a dataset, keys as the command-line contract says:
    ``det_ap``, ``det_ap50``, ``pose_ap``, ``pose_ap50``, ``seg_iou`` (person), ``seg_miou``."""
    tasks = list(predictor.model.tasks)
    results: dict[str, list[dict]] = {"det": [], "pose": []}
    matrix = ConfusionMatrix(predictor.info.num_classes + 1)
    image_ids: set[int] = set()
    for items in tqdm(batches, desc="evaluate", unit="batch", total=total, disable=not progress, leave=False):
        if not items:
            continue
        samples = [item.sample for item in items]
        image_ids.update(sample.image_id for sample in samples)
        decoded = predictor.decode(samples)
        for name in ("det", "pose"):
            if name in decoded:
                results[name] += predictor.model.tasks[name].to_coco(decoded[name], samples, predictor.info.category_ids)
        for found, item in zip(decoded.get("seg", []), items):
            matrix.update(labels_to_original(found.labels.cpu(), item.sample), item.semantic.long())
    gt = gt_subset(gt, image_ids, predictor.info.category_ids)
    metrics: dict[str, float] = {}
    if "det" in tasks:
        box = evaluate_coco(gt, results["det"], "bbox")
        metrics.update(det_ap=box["ap"], det_ap50=box["ap50"])
    if "pose" in tasks:
        pose = evaluate_coco(gt, results["pose"], "keypoints")
        metrics.update(pose_ap=pose["ap"], pose_ap50=pose["ap50"])
    if "seg" in tasks:
        metrics.update(segmentation_metrics(matrix, predictor.info.person_label))
    return metrics


def gt_subset(gt: dict, image_ids: set[int], category_ids: Sequence[int]) -> dict:
    """The ground truth of the evaluated images and the model's categories."""
    wanted = set(category_ids)
    return {
        **gt,
        "images": [image for image in gt["images"] if image["id"] in image_ids],
        "annotations": [a for a in gt.get("annotations", []) if a["image_id"] in image_ids and a["category_id"] in wanted],
        "categories": [c for c in gt["categories"] if c["id"] in wanted],
    }
