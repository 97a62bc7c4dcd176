"""Object detection as CenterNet: a center heatmap per class, box size and center offset.

Outputs (h, w = input size / output stride):
  det.heatmap [B, C, h, w]  logits of the center heatmap, one channel per class
  det.size    [B, 2, h, w]  box (width, height) in grid units (input pixels / stride)
  det.offset  [B, 2, h, w]  (x, y) from the cell's corner to the box center, grid units: in
                           [0, 1) at the center cell; beside it too with ``box_regression="region"``

Box regression (size and offset), ``box_regression``:
  center  CenterNet's: L1 at the center cell of each box only.
  region  the regression samples of TTFNet (Liu et al., AAAI 2020, "Training-Time-Friendly
          Network"), which trains CenterNet-style detectors several times faster, largely by
          regressing each box from many cells (it also changes the heatmap kernel and uses a
          GIoU loss; neither is done here): every cell (x, y) of the box's
          :func:`~deltalearn.mcn.heatmaps.regression_region` (the box shrunk by beta = 0.54,
          weights g an elliptical Gaussian summing to 1) learns the box size and the vector
          from (x, y) to the box center, with CenterNet's L1: the loss is
          sum(g |error|) / (2 * boxes), which is CenterNet's when a region is one cell. A peak
          one cell off the true center then still points at it. Where regions overlap the
          smaller box's cells win.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ...data.sample import Sample
from ..heatmaps import (
    REGRESSION, box_centers, cell_weight, draw_gaussian, focal_prior_bias, gather_cells, integer_radius, logit,
    regression_region, scatter_cells, topk_logit_peaks
)
from ..losses import focal_loss, masked_l1
from .base import HeadSpec, Results, Task, boxes_to_original, xyxy_to_xywh

HEATMAP_PRIOR = 0.1  # initial sigmoid of the heatmap logits
MAX_OBJECTS = 128  # objects per image that get size/offset targets; more are dropped
TOP_K = 100  # detections decoded per image


@dataclass
class Detections(Results):
    """Decoded boxes of one image ([K, ...]) or of a batch ([B, K, ...]), best first."""

    boxes: torch.Tensor  # [(B,) K, 4] xyxy in input-image pixels
    scores: torch.Tensor  # [(B,) K] heatmap peak value in [0, 1]
    labels: torch.Tensor  # [(B,) K] int64 class index 0..C-1


def decode_centers(heatmap: torch.Tensor, size: torch.Tensor, offset: torch.Tensor,
                   k: int = TOP_K) -> dict[str, torch.Tensor]:
    """Top-k heatmap peaks and their boxes, from raw outputs on the grid.

    ``heatmap`` [B, C, h, w] logits, ``size`` and ``offset`` [B, 2, h, w]. Returns the
    entries of :func:`topk_peaks` plus ``boxes`` [B, K, 4] xyxy in grid units. Computed in
    float32 (grid coordinates need more precision than bfloat16 has).
    """
    peaks = topk_logit_peaks(heatmap.float(), k)
    wh = gather_cells(size.float(), peaks["index"])  # [B, K, 2]
    sub_cell = gather_cells(offset.float(), peaks["index"])  # [B, K, 2]
    center_x = peaks["x"].to(wh.dtype) + sub_cell[..., 0]
    center_y = peaks["y"].to(wh.dtype) + sub_cell[..., 1]
    half_w, half_h = wh[..., 0] / 2.0, wh[..., 1] / 2.0
    boxes = torch.stack([center_x - half_w, center_y - half_h, center_x + half_w, center_y + half_h], dim=-1)
    return {**peaks, "boxes": boxes}


def decode_detections(outputs: Mapping[str, torch.Tensor], output_stride: int, k: int = TOP_K) -> Detections:
    """Batched detections from the raw output dict; export-friendly (max-pool, top-k, gather)."""
    name = DetectionTask.name
    found = decode_centers(outputs[f"{name}.heatmap"], outputs[f"{name}.size"], outputs[f"{name}.offset"], k)
    return Detections(boxes=found["boxes"] * output_stride, scores=found["score"], labels=found["channel"])


class DetectionTask(Task):
    """CenterNet detection of ``num_classes`` classes.

    Targets: a Gaussian at each box center of radius :func:`gaussian_radius` (CenterNet's rule,
    min_overlap 0.7), size and offset at the center cell, found through ``index`` (flat
    cell) and ``mask`` (1 for the first ``max_objects`` valid boxes); with
    ``box_regression="region"`` also dense ``size_map``, ``offset_map`` and ``region_weight``
    (module docstring). Cells touching a crowd region get heatmap-loss weight 0 (unless they
    hold an object center).
    """

    name = "det"
    result_type = Detections
    min_cells = TOP_K
    ignored_targets = {"heatmap": 0.0, "heatmap_weight": 0.0, "mask": 0.0, "region_weight": 0.0}
    default_term_weights = {"heatmap": 1.0, "size": 0.1, "offset": 1.0}  # CenterNet's weights
    distilled = {"heatmap": ("heatmap", None, "heatmap"), "size": ("regression", "det.heatmap", "size"),
                 "offset": ("regression", "det.heatmap", "offset")}

    def __init__(self, num_classes: int, in_channels: int, head_channels: int = 64,
                 max_objects: int = MAX_OBJECTS, weight: float = 1.0,
                 term_weights: Mapping[str, float] | None = None, head_trunk: str = "per_output",
                 head_conv: str = "dense",
                 box_regression: str = "center") -> None:
        if box_regression not in REGRESSION:
            raise ValueError(f"box_regression must be one of {REGRESSION}, got {box_regression!r}")
        heads = {
            "heatmap": HeadSpec(num_classes, focal_prior_bias(HEATMAP_PRIOR)),
            "size": HeadSpec(2),
            "offset": HeadSpec(2),
        }
        super().__init__(heads, in_channels, head_channels, weight, term_weights, head_trunk, head_conv)
        self.num_classes = num_classes
        self.max_objects = max_objects
        self.box_regression = box_regression

    def encode_sample(self, sample: Sample, output_stride: int) -> dict[str, torch.Tensor]:
        height, width = sample.size
        grid = (height // output_stride, width // output_stride)
        heatmap = torch.zeros((self.num_classes, *grid))  # [C, h, w]
        index = torch.zeros(self.max_objects, dtype=torch.int64)  # [K] flat center cell
        mask = torch.zeros(self.max_objects)  # [K] 1 where a box is encoded
        size = torch.zeros((self.max_objects, 2))  # [K, 2] (w, h) grid units
        offset = torch.zeros((self.max_objects, 2))  # [K, 2] center - cell
        if len(sample.labels) and int(sample.labels.max()) >= self.num_classes:
            raise ValueError(f"image {sample.image_id}: label {int(sample.labels.max())} "
                             f"out of range for {self.num_classes} detection classes")
        centers = box_centers(sample.boxes, output_stride, grid)
        valid = centers["valid"].nonzero().flatten()[: self.max_objects].tolist()
        for slot, i in enumerate(valid):
            cell_x, cell_y = centers["cell"][i].tolist()
            box_w, box_h = centers["size"][i].tolist()
            draw_gaussian(heatmap[int(sample.labels[i])], (cell_x, cell_y), integer_radius(box_h, box_w))
            index[slot] = cell_y * grid[1] + cell_x
            mask[slot] = 1.0
            size[slot] = centers["size"][i]
            offset[slot] = centers["center"][i] - centers["cell"][i]
        weight = torch.maximum(cell_weight(sample.crowd, output_stride), heatmap.amax(0, keepdim=True).eq(1.0).float())
        targets = {self.key("heatmap"): heatmap, self.key("heatmap_weight"): weight, self.key("index"): index,
                   self.key("mask"): mask, self.key("size"): size, self.key("offset"): offset}
        if self.box_regression == "region":
            targets.update(self._encode_regions(centers, valid, grid))
        return targets

    def _encode_regions(self, centers: dict[str, torch.Tensor], valid: list[int],
                        grid: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Dense size and offset maps [2, h, w] and their weights [1, h, w] (module docstring)."""
        h, w = grid
        size_map, offset_map = torch.zeros((2, h, w)), torch.zeros((2, h, w))
        region_weight = torch.zeros((1, h, w))
        for i in sorted(valid, key=lambda i: -float(centers["size"][i].prod())):  # small boxes paint last
            center_x, center_y = centers["center"][i].tolist()
            rows, columns, weight = regression_region((center_x, center_y), centers["size"][i].tolist(),
                                                      centers["cell"][i].tolist(), grid)
            size_map[:, rows, columns] = centers["size"][i][:, None, None]
            offset_map[0, rows, columns] = center_x - torch.arange(columns.start, columns.stop)[None, :]
            offset_map[1, rows, columns] = center_y - torch.arange(rows.start, rows.stop)[:, None]
            region_weight[0, rows, columns] = weight
        return {self.key("size_map"): size_map, self.key("offset_map"): offset_map,
                self.key("region_weight"): region_weight}

    def loss_terms(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                   terms: set[str]) -> dict[str, torch.Tensor]:
        key = self.key
        found: dict[str, torch.Tensor] = {}
        if "heatmap" in terms:
            found["heatmap"] = focal_loss(outputs[key("heatmap")], targets[key("heatmap")],
                                          targets[key("heatmap_weight")])
        for term in ("size", "offset"):
            if term not in terms:
                continue
            if self.box_regression == "region":
                error = (outputs[key(term)].float() - targets[key(f"{term}_map")]).abs()  # [B, 2, h, w]
                boxes = targets[key("mask")].sum().clamp(min=1.0)
                found[term] = (error * targets[key("region_weight")]).sum() / (2.0 * boxes)
            else:
                pred = gather_cells(outputs[key(term)], targets[key("index")])  # [B, K, 2]
                found[term] = masked_l1(pred, targets[key(term)], targets[key("mask")])
        return found

    def decode_batched(self, outputs: Mapping[str, torch.Tensor], output_stride: int, k: int = TOP_K) -> Detections:
        return decode_detections(outputs, output_stride, k)

    def to_coco(self, results: Sequence[Detections], samples: Sequence[Sample],
                category_ids: Sequence[int], min_score: float = 0.0) -> list[dict]:
        """COCO ``bbox`` results: xywh in original-image pixels, ``category_ids[label]``."""
        entries = []
        for found, sample in zip(results, samples):
            keep = found.scores >= min_score
            boxes = xyxy_to_xywh(boxes_to_original(found.boxes[keep].float(), sample))
            for box, score, label in zip(boxes.tolist(), found.scores[keep].tolist(), found.labels[keep].tolist()):
                entries.append({"image_id": sample.image_id, "category_id": int(category_ids[label]),
                                "bbox": [round(v, 2) for v in box], "score": float(score)})
        return entries

    def oracle_outputs(self, targets: Mapping[str, torch.Tensor], output_stride: int) -> dict[str, torch.Tensor]:
        key = self.key
        heatmap = targets[key("heatmap")]
        batch, _, h, w = heatmap.shape
        outputs = {key("heatmap"): logit(heatmap)}
        if self.box_regression == "region":
            return {**outputs, key("size"): targets[key("size_map")].clone(),
                    key("offset"): targets[key("offset_map")].clone()}
        for term in ("size", "offset"):
            field = torch.zeros((batch, 2, h, w))
            scatter_cells(field, targets[key("index")], targets[key(term)], targets[key("mask")])
            outputs[key(term)] = field
        return outputs
