"""Sample transforms on torchvision ``transforms.v2`` and tv_tensors.

A ``Sample`` is turned into a dict of tv_tensors (Image, BoundingBoxes, Mask, KeyPoints)
so that every geometric transform moves image, boxes, masks and keypoints together. After
the transform, keypoints that left the canvas become unlabelled (v = 0) and objects whose
box collapsed are dropped. The horizontal flip also swaps left and right keypoints.

Evaluation uses ``Letterbox``: resize the longer side to the input size, pad to a square,
and record scale and offset in the sample so that predictions map back to the original
image (``Sample.to_original``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .keypoints import flip_permutation
from .sample import Sample

MIN_BOX_SIDE = 1.0  # px; objects whose box is thinner after a transform are dropped


def to_tv(sample: Sample) -> dict[str, Any]:
    """The sample as tv_tensors; plain tensors (labels, visibility) pass through v2 untouched."""
    canvas = sample.size
    return {
        "image": tv_tensors.Image(sample.image),
        "boxes": tv_tensors.BoundingBoxes(sample.boxes, format="XYXY", canvas_size=canvas),
        "masks": tv_tensors.Mask(sample.masks.to(torch.uint8)),
        "crowd": tv_tensors.Mask(sample.crowd[None].to(torch.uint8)),
        "keypoints": tv_tensors.KeyPoints(sample.keypoints[..., :2].reshape(-1, 2), canvas_size=canvas),
        "visibility": sample.keypoints[..., 2].clone(),
        "labels": sample.labels,
    }


def from_tv(data: dict[str, Any], like: Sample, **changes: Any) -> Sample:
    """Back to a Sample: unlabel keypoints off the canvas, drop collapsed objects."""
    image = data["image"].as_subclass(torch.Tensor)
    height, width = image.shape[-2:]
    boxes = data["boxes"].as_subclass(torch.Tensor).float()
    n = boxes.shape[0]
    joints = like.keypoints.shape[1]
    xy = data["keypoints"].as_subclass(torch.Tensor).reshape(n, joints, 2).float()
    vis = data["visibility"].clone()
    inside = (xy[..., 0] >= 0) & (xy[..., 0] < width) & (xy[..., 1] >= 0) & (xy[..., 1] < height)
    vis = torch.where(inside, vis, torch.zeros_like(vis))
    xy = torch.where((vis > 0)[..., None], xy, torch.zeros_like(xy))
    keypoints = torch.cat([xy, vis[..., None]], dim=-1)
    masks = data["masks"].as_subclass(torch.Tensor).bool()
    keep = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_SIDE)
    if masks.shape[0]:
        keep &= masks.flatten(1).any(1)
    ann_ids = [a for a, k in zip(like.ann_ids, keep.tolist()) if k] if like.ann_ids else []
    return dataclasses.replace(
        like,
        image=image,
        boxes=boxes[keep],
        labels=data["labels"][keep],
        masks=masks[keep],
        keypoints=keypoints[keep],
        crowd=data["crowd"].as_subclass(torch.Tensor)[0].bool(),
        ann_ids=ann_ids,
        **changes,
    )


class RandomAffine(v2.RandomAffine):
    """torchvision's ``RandomAffine`` (the same parameters, drawn the same way) whose images and
    masks are warped by OpenCV's ``warpAffine`` when there is no rotation or shear: the same
    geometry as torchvision's (a point at continuous position c moves to
    center + translate + scale * (c - center)) at a fraction of the CPU time of its
    ``grid_sample``. Boxes and keypoints, and any rotation or shear, stay with torchvision."""

    def __init__(self, *args: Any, fill: Any = 0, **kwargs: Any) -> None:
        super().__init__(*args, fill=fill, **kwargs)
        self.fill_by_type = fill  # a number, or a dict by tv_tensor type, as v2 takes it

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        plain = params["angle"] == 0 and params["shear"] == (0.0, 0.0)
        if not plain or not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)) or inpt.dtype != torch.uint8:
            return super().transform(inpt, params)
        height, width = inpt.shape[-2:]
        scale, (tx, ty) = params["scale"], params["translate"]
        # cv2 maps pixel indices (centers at integers): index' = scale * index + shift
        matrix = np.array([[scale, 0.0, (1.0 - scale) * (width / 2 - 0.5) + tx],
                           [0.0, scale, (1.0 - scale) * (height / 2 - 0.5) + ty]])
        image = isinstance(inpt, tv_tensors.Image)
        fill = _fill_value(self.fill_by_type, type(inpt))
        flags = cv2.INTER_LINEAR if image and self.interpolation == v2.InterpolationMode.BILINEAR else cv2.INTER_NEAREST
        planes = inpt.as_subclass(torch.Tensor).reshape(-1, height, width).numpy()
        if image:  # [C, H, W] -> HWC, one call for all channels
            warped = cv2.warpAffine(np.ascontiguousarray(planes.transpose(1, 2, 0)), matrix, (width, height),
                                    flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * 4)
            out = torch.from_numpy(warped.reshape(height, width, -1).transpose(2, 0, 1).copy())
        else:  # masks one by one: any count of them
            out = torch.from_numpy(np.stack([cv2.warpAffine(plane, matrix, (width, height), flags=flags,
                                                            borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
                                             for plane in planes])) if len(planes) else torch.from_numpy(planes)
        return tv_tensors.wrap(out.reshape(inpt.shape), like=inpt)


def _fill_value(fill: Any, kind: type) -> int:
    """The constant one tv_tensor type is filled with (``fill`` as v2 takes it: a number or a dict by type)."""
    value = fill.get(kind, 0) if isinstance(fill, dict) else fill
    return 0 if value is None else int(value[0] if isinstance(value, (list, tuple)) else value)


class Compose:
    """Apply sample transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for transform in self.transforms:
            sample = transform(sample)
        return sample

    def __repr__(self) -> str:
        inner = "\n".join(f"    {t!r}" for t in self.transforms)
        return f"{type(self).__name__}(\n{inner}\n)"


class V2(Compose):
    """Run torchvision v2 transforms on a sample (keeps the mapping to the original image)."""

    def __init__(self, *transforms: Callable):
        super().__init__([])
        self.transform = v2.Compose(list(transforms))

    def __call__(self, sample: Sample) -> Sample:
        return from_tv(self.transform(to_tv(sample)), sample)

    def __repr__(self) -> str:
        return f"V2({self.transform!r})"


class RandomHorizontalFlip:
    """Mirror the sample with probability ``p``; left and right keypoints swap names."""

    def __init__(self, p: float = 0.5, keypoint_names: Sequence[str] | None = None):
        self.p = p
        self.permutation = flip_permutation(*(() if keypoint_names is None else (tuple(keypoint_names),)))

    def __call__(self, sample: Sample) -> Sample:
        if torch.rand(()) >= self.p:
            return sample
        data = to_tv(sample)
        for key in ("image", "boxes", "masks", "crowd", "keypoints"):
            data[key] = F.horizontal_flip(data[key])
        n, joints = sample.keypoints.shape[:2]
        points = data["keypoints"].reshape(n, joints, 2)[:, self.permutation].reshape(-1, 2)
        data["keypoints"] = tv_tensors.wrap(points, like=data["keypoints"])
        data["visibility"] = data["visibility"][:, self.permutation]
        return from_tv(data, sample)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Letterbox:
    """Resize the longer side to ``size`` and pad to ``size`` x ``size`` (bottom and right).

    Records the map back to the original image in ``sample.scale`` and ``sample.offset``;
    the padding is ``fill`` (ImageNet mean grey by default) and is never an object.
    """

    def __init__(self, size: int, fill: int = 124):
        self.size = size
        self.fill = fill

    def __call__(self, sample: Sample) -> Sample:
        height, width = sample.size
        side = max(height, width)
        ratio = self.size / side
        if height == width == self.size:  # already the input size: no pad, no resize, the same clean-up
            return from_tv(to_tv(sample), sample)
        # Pad to a square first, then resize: x and y then scale by exactly the same ratio.
        padding = [0, 0, side - width, side - height]  # left, top, right, bottom
        data = to_tv(sample)
        for key in ("image", "boxes", "masks", "crowd", "keypoints"):
            value = F.pad(data[key], padding, fill=self.fill if key == "image" else 0)
            if isinstance(value, tv_tensors.Mask):
                value = F.resize(value, [self.size, self.size], interpolation=v2.InterpolationMode.NEAREST)
            else:
                value = F.resize(value, [self.size, self.size], antialias=True)
            data[key] = value
        scale = sample.scale * ratio
        offset = (sample.offset[0] * ratio, sample.offset[1] * ratio)
        return from_tv(data, sample, scale=scale, offset=offset)

    def __repr__(self) -> str:
        return f"Letterbox(size={self.size})"


def train_transforms(
    size: int,
    scale_range: tuple[float, float] = (0.6, 1.4),
    shift: float = 0.2,
    flip: float = 0.5,
    color_jitter: float = 0.3,
    keypoint_names: Sequence[str] | None = None,
    hue_jitter: float | None = None,
) -> Compose:
    """CenterNet-style augmentation: letterbox, random scale and shift (a crop when the
    scale is above 1), horizontal flip with keypoint swap, colour jitter (brightness,
    contrast and saturation by ``color_jitter``, hue by ``hue_jitter``, by default
    ``min(0.05, color_jitter / 6)``)."""
    steps: list[Callable[[Sample], Sample]] = [Letterbox(size)]
    geometric = []
    if scale_range != (1.0, 1.0) or shift > 0:
        geometric.append(
            RandomAffine(
                degrees=0,
                translate=(shift, shift),
                scale=scale_range,
                interpolation=v2.InterpolationMode.BILINEAR,
                fill={tv_tensors.Image: 124, tv_tensors.Mask: 0},
            )
        )
    hue = min(0.05, color_jitter / 6) if hue_jitter is None else hue_jitter
    if color_jitter > 0 or hue > 0:
        geometric.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter, hue))
    if geometric:
        steps.append(V2(*geometric))
    if flip > 0:
        steps.append(RandomHorizontalFlip(flip, keypoint_names))
    return Compose(steps)


def eval_transforms(size: int) -> Compose:
    """Deterministic letterbox to the network input; predictions map back with scale/offset."""
    return Compose([Letterbox(size)])
