"""Drawings of ground truth and predictions: boxes, masks, skeletons (torchvision.utils)."""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes, draw_keypoints, draw_segmentation_masks

from ..data.keypoints import KEYPOINT_NAMES, SKELETON

MIN_DRAW_SIDE = 512  # small images are upscaled to at least this for legible drawings


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` well separated, saturated colours."""
    colours = []
    for i in range(max(n, 1)):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 1.0)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def _side_colour(name: str) -> tuple[int, int, int]:
    if name.startswith("left_"):
        return (255, 140, 0)  # left: orange
    if name.startswith("right_"):
        return (0, 160, 255)  # right: blue
    return (255, 255, 255)


def draw_instances(
    image: torch.Tensor,
    boxes: torch.Tensor | None = None,
    labels: Sequence[str] | None = None,
    masks: torch.Tensor | None = None,
    keypoints: torch.Tensor | None = None,
    crowd: torch.Tensor | None = None,
    colours: Sequence[tuple[int, int, int]] | None = None,
    mask_colours: Sequence[tuple[int, int, int]] | None = None,
    skeleton: Sequence[tuple[int, int]] = SKELETON,
    keypoint_names: Sequence[str] = KEYPOINT_NAMES,
    min_side: int = MIN_DRAW_SIDE,
) -> torch.Tensor:
    """Draw instances on ``image`` [3, H, W] uint8; returns a new (possibly upscaled) image.

    boxes [N, 4] xyxy; masks [N, H, W] bool; keypoints [N, K, 3] with visibility (v = 1
    drawn hollow-looking in grey, v = 2 in side colours: left orange, right blue); crowd
    [H, W] bool hatched in grey. ``colours`` per instance (``mask_colours`` where masks are
    not instances, e.g. one per class). ``skeleton`` is 1-based as in COCO.
    """
    height, width = image.shape[-2:]
    zoom = max(1.0, min_side / max(height, width))
    if zoom > 1:
        size = [round(height * zoom), round(width * zoom)]
        image = torch.nn.functional.interpolate(image[None].float(), size=size, mode="nearest")[0].byte()
        if masks is not None and len(masks):
            masks = torch.nn.functional.interpolate(masks[None].float(), size=size, mode="nearest")[0].bool()
        if crowd is not None:
            crowd = torch.nn.functional.interpolate(crowd[None, None].float(), size=size, mode="nearest")[0, 0].bool()
    n = 0 if boxes is None else len(boxes)
    colours = list(colours) if colours is not None else palette(n)
    out = image.clone()
    if crowd is not None and crowd.any():
        out = draw_segmentation_masks(out, crowd[None], alpha=0.6, colors=[(128, 128, 128)])
    if masks is not None and len(masks):
        fill = list(mask_colours) if mask_colours is not None else colours
        out = draw_segmentation_masks(out, masks, alpha=0.55, colors=fill[: len(masks)])
    if n:
        width_px = max(1, round(zoom))
        out = draw_bounding_boxes(out, boxes * zoom, labels=list(labels) if labels else None, colors=colours[:n], width=width_px)
    if keypoints is not None and len(keypoints):
        out = _draw_skeletons(out, keypoints, zoom, skeleton, keypoint_names)
    return out


def _draw_skeletons(image, keypoints, zoom, skeleton, keypoint_names) -> torch.Tensor:
    xy = keypoints[..., :2] * zoom
    vis = keypoints[..., 2]
    limbs = [(a - 1, b - 1) for a, b in skeleton]
    radius = max(2, round(zoom * 1.5))
    for person_xy, person_vis in zip(xy, vis):
        if not (person_vis > 0).any():
            continue
        # Limbs between labelled keypoints, then the points coloured by side.
        connect = [(a, b) for a, b in limbs if person_vis[a] > 0 and person_vis[b] > 0]
        image = draw_keypoints(image, person_xy[None], connectivity=connect, colors=(230, 230, 60), radius=0, width=max(1, round(zoom)))
        for k in torch.nonzero(person_vis > 0).flatten().tolist():
            colour = _side_colour(keypoint_names[k]) if person_vis[k] >= 2 else (150, 150, 150)
            image = draw_keypoints(image, person_xy[None, k : k + 1], colors=colour, radius=radius)
    return image


def save_png(image: torch.Tensor, path: str | Path) -> None:
    """Write a [3, H, W] uint8 tensor as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())).save(path)
