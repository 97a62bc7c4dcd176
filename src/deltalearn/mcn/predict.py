"""Drawings of a network's predictions on the original image."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.sample import Sample
from ..viz.draw import MIN_DRAW_SIDE, draw_instances, palette
from .tasks.base import boxes_to_original
from .tasks.segmentation import labels_to_original
from .weights import ModelInfo


def draw_prediction(image: torch.Tensor, sample: Sample, found: dict, info: ModelInfo,
                    score_threshold: float, min_side: int = MIN_DRAW_SIDE,
                    track_ids: Sequence[int] | None = None) -> torch.Tensor:
    """Boxes with class and score, the semantic mask, skeletons; in original pixels, a small
    image upscaled to ``min_side`` (0: never). ``track_ids``: one identity per box kept at
    ``score_threshold`` (negative: none), drawn as ``#id`` before its class."""
    colours = palette(info.num_classes)
    boxes = labels = masks = keypoints = None
    box_colours: list[tuple[int, int, int]] = []
    mask_colours: list[tuple[int, int, int]] = []
    if "det" in found:
        det = found["det"]
        keep = det.scores >= score_threshold
        boxes = boxes_to_original(det.boxes[keep].float().cpu(), sample)
        labels = [f"{info.category_names[int(c)]} {float(s):.2f}" for c, s in zip(det.labels[keep], det.scores[keep])]
        if track_ids is not None:
            labels = [f"#{int(i)} {text}" if int(i) >= 0 else text for i, text in zip(track_ids, labels)]
        box_colours = [colours[int(c)] for c in det.labels[keep]]
    if "seg" in found:
        semantic = labels_to_original(found["seg"].labels.cpu(), sample)
        present = [v for v in semantic.unique().tolist() if 0 < v <= info.num_classes]
        masks = torch.stack([semantic == v for v in present]) if present else None
        mask_colours = [colours[v - 1] for v in present]
    if "pose" in found:
        pose = found["pose"]
        keep = pose.scores >= score_threshold
        xy = sample.to_original(pose.keypoints[keep].float().cpu())
        keypoints = torch.cat([xy, torch.full_like(xy[..., :1], 2.0)], dim=-1)
    return draw_instances(image, boxes, labels, masks, keypoints, colours=box_colours, mask_colours=mask_colours,
                          skeleton=[tuple(limb) for limb in info.skeleton], keypoint_names=info.keypoint_names,
                          min_side=min_side)
