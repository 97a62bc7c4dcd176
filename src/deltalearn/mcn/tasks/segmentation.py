"""Semantic segmentation on the shared stride-4 features.

Output: seg.logits [B, C + 1, h, w], channel 0 background, channel label + 1 per class.
Loss and decoding upsample the logits bilinearly to the input size first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from ...data.sample import IGNORE_INDEX, Sample
from ..losses import dice_loss, segmentation_ce
from .base import HeadSpec, Results, Task

ORACLE_EPS = 1e-6  # floor of the class fractions whose log the oracle outputs


@dataclass
class SemanticMaps(Results):
    """Decoded label maps of one image ([H, W]) or of a batch ([B, H, W])."""

    labels: torch.Tensor  # [(B,) H, W] int64 in input pixels: 0 background, label + 1 per class


def upsample_logits(logits: torch.Tensor, output_stride: int) -> torch.Tensor:
    """[B, C, h, w] -> [B, C, h * stride, w * stride], bilinear."""
    return F.interpolate(logits, scale_factor=output_stride, mode="bilinear", align_corners=False)


def decode_segmentation(outputs: Mapping[str, torch.Tensor], output_stride: int) -> SemanticMaps:
    """Batched label maps at input size from the raw output dict (upsample + argmax)."""
    logits = outputs[f"{SegmentationTask.name}.logits"]
    if logits.shape[1] == 2:
        # background or one class: the sign of one upsampled difference (bilinear upsampling is
        # linear), ties to background as argmax; a third of the work of upsampling both maps
        foreground = (upsample_logits(logits[:, 1:] - logits[:, :1], output_stride) > 0).flatten(0, 1)
        return SemanticMaps(labels=foreground.long())
    # max(...).indices is the argmax (the first of equal maxima) without torch.argmax's slow
    # CPU kernel over the class axis (docs/decoding.md)
    return SemanticMaps(labels=upsample_logits(logits, output_stride).max(dim=1).indices)


def labels_to_original(labels: torch.Tensor, sample: Sample) -> torch.Tensor:
    """[H, W] label map in input pixels -> [H0, W0] in original pixels (nearest sample)."""
    height, width = sample.orig_size
    if height <= 0 or width <= 0:
        return labels
    rows = ((torch.arange(height) + 0.5) * sample.scale + sample.offset[1]).floor().long()
    cols = ((torch.arange(width) + 0.5) * sample.scale + sample.offset[0]).floor().long()
    rows = rows.clamp(0, labels.shape[0] - 1).to(labels.device)
    cols = cols.clamp(0, labels.shape[1] - 1).to(labels.device)
    return labels[rows][:, cols]


def encode_rle(mask: torch.Tensor) -> dict:
    """COCO RLE of a [H, W] bool mask, counts as a str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.cpu().numpy().astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


class SegmentationTask(Task):
    """Semantic segmentation of ``num_classes`` object classes plus background.

    Target: ``seg.mask`` [B, H, W] from :meth:`Sample.semantic_mask` (crowd = 255, ignored).
    Loss: cross-entropy (``ce``) and an optional soft Dice term (``dice``, weight 0 by default).
    """

    name = "seg"
    result_type = SemanticMaps
    ignored_targets = {"mask": IGNORE_INDEX}
    default_term_weights = {"ce": 1.0, "dice": 0.0}
    distilled = {"logits": ("softmax", None, "ce")}

    def __init__(self, num_classes: int, in_channels: int, head_channels: int = 64, weight: float = 1.0,
                 term_weights: Mapping[str, float] | None = None, head_trunk: str = "per_output",
                 head_conv: str = "dense") -> None:
        super().__init__({"logits": HeadSpec(num_classes + 1)}, in_channels, head_channels, weight, term_weights,
                         head_trunk, head_conv)
        self.num_classes = num_classes

    def encode_sample(self, sample: Sample, output_stride: int) -> dict[str, torch.Tensor]:
        return {self.key("mask"): sample.semantic_mask()}

    def loss_terms(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                   terms: set[str]) -> dict[str, torch.Tensor]:
        target = targets[self.key("mask")]  # [B, H, W]
        logits = outputs[self.key("logits")]  # [B, C + 1, h, w]
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        found = {}
        if "ce" in terms:
            found["ce"] = segmentation_ce(logits, target)
        if "dice" in terms:
            found["dice"] = dice_loss(logits, target)
        return found

    def decode_batched(self, outputs: Mapping[str, torch.Tensor], output_stride: int) -> SemanticMaps:
        return decode_segmentation(outputs, output_stride)

    def to_coco(self, results: Sequence[SemanticMaps], samples: Sequence[Sample],
                category_ids: Sequence[int], min_score: float = 0.0) -> list[dict]:
        """One entry per image and class present: RLE ``segmentation`` in original pixels."""
        entries = []
        for found, sample in zip(results, samples):
            labels = labels_to_original(found.labels, sample)
            for value in labels.unique().tolist():
                if value == 0 or value > len(category_ids):
                    continue
                entries.append({"image_id": sample.image_id, "category_id": int(category_ids[value - 1]),
                                "segmentation": encode_rle(labels == value), "score": 1.0})
        return entries

    def oracle_outputs(self, targets: Mapping[str, torch.Tensor], output_stride: int) -> dict[str, torch.Tensor]:
        """Log of each class's pixel fraction per cell (crowd pixels left out)."""
        target = targets[self.key("mask")]  # [B, H, W]
        valid = target != IGNORE_INDEX
        one_hot = F.one_hot(torch.where(valid, target, 0), self.num_classes + 1)  # [B, H, W, C + 1]
        one_hot = (one_hot * valid[..., None]).permute(0, 3, 1, 2).float()
        fraction = F.avg_pool2d(one_hot, kernel_size=output_stride)  # [B, C + 1, h, w]
        return {self.key("logits"): torch.log(fraction + ORACLE_EPS)}
