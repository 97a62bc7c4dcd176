"""The Python API: a trained network in one object, images in, one result per image out.

    from deltalearn import MCN
    model = MCN("runs/x/best.safetensors")       # a run folder, weights file or exported .onnx
    results = model.predict(["a.jpg", frame], batch=8)
    results[0].boxes, results[0].keypoints, results[0].semantic, results[0].to_coco(), results[0].plot()

Items are image paths, RGB arrays [H, W, 3] uint8 (numpy or torch), or PIL images. Results
are in the original image's pixels. Errors are the library's own, with the CLI's messages:
:class:`deltalearn.data.errors.DataError` for an unreadable image, CheckpointError for weights.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data.errors import DataError
from .data.io import load_rgb
from .data.sample import Sample, empty_targets
from .data.transforms import Letterbox
from .export.runtime import load_predictor
from .mcn.predict import draw_prediction
from .mcn.predictor import Predictor
from .mcn.tasks.base import boxes_to_original
from .mcn.tasks.segmentation import labels_to_original
from .viz.draw import MIN_DRAW_SIDE

SCORE_THRESHOLD = 0.3  # boxes and persons below this score are left out (the CLI's default)
Item = str | os.PathLike | np.ndarray | torch.Tensor | Any  # a path, an RGB array or a PIL image


@dataclass
class MCNResult:
    """What the network found in one image, in that image's pixels. Tasks the network does not
    have give empty fields (``semantic`` None)."""

    image: np.ndarray  # [H, W, 3] uint8 RGB, the input
    boxes: np.ndarray  # [N, 4] float32 xyxy
    scores: np.ndarray  # [N] float32 in [0, 1], best first
    labels: np.ndarray  # [N] int64 class index into ``names``
    names: list[str]  # the network's category names
    keypoints: np.ndarray  # [P, 17, 3] float32 (x, y, score) of the persons found by pose
    person_boxes: np.ndarray  # [P, 4] float32 xyxy of those persons
    person_scores: np.ndarray  # [P] float32
    semantic: np.ndarray | None  # [H, W] int64: 0 background, label + 1 per class
    source: str = ""  # the item's path, or "" for an array
    coco: list[dict] = field(default_factory=list, repr=False)  # COCO results entries, image_id 0
    _drawing: Any = field(default=None, repr=False)  # (letterboxed sample, decoded results, info)

    def __repr__(self) -> str:
        height, width = self.image.shape[:2]
        seg = "" if self.semantic is None else f", semantic {height}x{width}"
        return (f"MCNResult({self.source or 'array'} {width}x{height}: {len(self.boxes)} boxes, "
                f"{len(self.keypoints)} persons with keypoints{seg})")

    def to_coco(self, image_id: int = 0) -> list[dict]:
        """COCO results entries (boxes, keypoints, segmentation RLE), each with its ``task``."""
        return [{**entry, "image_id": image_id} for entry in self.coco]

    def plot(self, min_side: int = MIN_DRAW_SIDE) -> np.ndarray:
        """The image with boxes, labels, the semantic mask and skeletons, as uint8 RGB [H, W, 3];
        an image smaller than ``min_side`` px is upscaled first, so that labels stay legible
        (0: always the image's own size)."""
        sample, found, info, threshold = self._drawing
        original = torch.from_numpy(self.image).permute(2, 0, 1)
        return draw_prediction(original, sample, found, info, threshold, min_side).permute(1, 2, 0).numpy()


class MCN:
    """A trained Multitask CenterNet for prediction, in PyTorch or onnxruntime.

    ``weights``: a run folder (best, else last weights), a ``.safetensors`` file, or an ``.onnx``
    file made by ``deltalearn mcn export``. ``precision``: PyTorch weights only ("auto", "fp32",
    "bf16", "fp16"). ``score_threshold``: boxes and persons below it are left out of results.
    """

    def __init__(self, weights: str | os.PathLike, precision: str = "auto",
                 score_threshold: float = SCORE_THRESHOLD) -> None:
        self.weights = Path(weights)
        self.predictor: Predictor = load_predictor(self.weights, precision)
        self.info = self.predictor.info
        self.score_threshold = score_threshold
        self.letterbox = Letterbox(self.info.config.data.image_size)

    @property
    def tasks(self) -> list[str]:
        return list(self.predictor.tasks)

    @property
    def names(self) -> list[str]:
        return list(self.info.category_names)

    def __repr__(self) -> str:
        return f"MCN({self.weights}, tasks {self.tasks}, classes {self.names}, input {self.info.config.data.image_size} px)"

    def predict(self, items: Item | Sequence[Item], batch: int = 8) -> list[MCNResult]:
        """One :class:`MCNResult` per item, run ``batch`` images at a time. A single item
        (not in a list) gives a list of one."""
        if isinstance(items, (str, os.PathLike, np.ndarray, torch.Tensor)) or not isinstance(items, Iterable):
            items = [items]
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        items = list(items)
        results: list[MCNResult] = []
        for start in range(0, len(items), batch):
            results += self._predict_batch(items[start:start + batch])
        return results

    __call__ = predict

    def _predict_batch(self, items: Sequence[Item]) -> list[MCNResult]:
        originals = [_as_sample(item, index) for index, item in enumerate(items)]
        samples = [self.letterbox(original) for original in originals]
        decoded = self.predictor.decode(samples)
        coco = self.predictor.coco_results(decoded, samples, min_score=self.score_threshold)
        results = []
        for i, (original, sample) in enumerate(zip(originals, samples)):
            found = {task: per_image[i] for task, per_image in decoded.items()}
            entries = [{**entry, "task": task} for task, per_task in coco.items()
                       for entry in per_task if entry["image_id"] == sample.image_id]
            results.append(self._result(original, sample, found, entries))
        return results

    def _result(self, original: Sample, sample: Sample, found: dict, coco: list[dict]) -> MCNResult:
        threshold = self.score_threshold
        boxes, scores, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        if "det" in found:
            det = found["det"]
            keep = det.scores >= threshold
            boxes = boxes_to_original(det.boxes[keep].float().cpu(), sample).numpy()
            scores, labels = det.scores[keep].float().cpu().numpy(), det.labels[keep].cpu().numpy()
        keypoints, person_boxes, person_scores = np.zeros((0, len(self.info.keypoint_names), 3), np.float32), np.zeros((0, 4), np.float32), \
            np.zeros(0, np.float32)
        if "pose" in found:
            pose = found["pose"]
            keep = pose.scores >= threshold
            xy = sample.to_original(pose.keypoints[keep].float().cpu())
            keypoints = torch.cat([xy, pose.keypoint_scores[keep].float().cpu()[..., None]], dim=-1).numpy()
            person_boxes = boxes_to_original(pose.boxes[keep].float().cpu(), sample).numpy()
            person_scores = pose.scores[keep].float().cpu().numpy()
        semantic = labels_to_original(found["seg"].labels.cpu(), sample).numpy() if "seg" in found else None
        return MCNResult(
            image=original.image.permute(1, 2, 0).numpy(), boxes=boxes.astype(np.float32), scores=scores,
            labels=labels.astype(np.int64), names=self.names, keypoints=keypoints.astype(np.float32),
            person_boxes=person_boxes.astype(np.float32), person_scores=person_scores, semantic=semantic,
            source=original.file_name, coco=coco, _drawing=(sample, found, self.info, threshold),
        )


def _as_sample(item: Item, index: int) -> Sample:
    """An original-size Sample (no targets) of a path, an RGB array or a PIL image."""
    name = ""
    if isinstance(item, (str, os.PathLike)):
        name = str(item)
        pixels = load_rgb(item)
    elif isinstance(item, torch.Tensor):
        pixels = item.cpu().numpy()
    elif hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        pixels = np.asarray(item.convert("RGB"))
    else:
        pixels = np.asarray(item)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        where = name or f"item {index}"
        raise DataError(where, f"not an RGB image: expected an [H, W, 3] uint8 array, got "
                               f"{list(pixels.shape)} {pixels.dtype}")
    image = torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1).contiguous()
    return Sample(image=image, **empty_targets(*image.shape[-2:]), image_id=index + 1, file_name=name,
                  orig_size=tuple(image.shape[-2:]))
