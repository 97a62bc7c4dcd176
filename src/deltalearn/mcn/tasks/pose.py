"""Human pose as CenterNet multi-pose: keypoints regressed from person centers, then snapped
to keypoint-heatmap peaks.

Outputs (J = 17 COCO keypoints, h, w = input size / output stride):
  pose.heatmap      [B, J, h, w]      logits of one heatmap per keypoint type
  pose.displacement [B, 2 J, h, w]    (dx, dy) per joint from a cell's corner to the keypoint,
                                      grid units, read at the person's center cell. Learned at
                                      that cell only (``regression="center"``, CenterNet's) or at
                                      every cell of the person's regression region, weighted as
                                      the detection task's (``"region"``, TTFNet's sampling), so
                                      that a center peak one cell off still finds the joints
  pose.offset       [B, 2 J, h, w]    sub-cell (x, y) offset of each keypoint-heatmap peak,
                    or [B, 2, h, w]   one pair shared by all joints (``pose_offsets="shared"``,
                                      CenterNet's; nearby joints in one cell overwrite each other)
Person centers, boxes and scores come from the detection task's heatmap (class ``person_label``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ...data.keypoints import NUM_KEYPOINTS
from ...data.sample import Sample
from ..heatmaps import (
    NOT_A_PEAK, REGRESSION, box_centers, cell_weight, draw_gaussian, find_peaks, focal_prior_bias, gather_cells,
    integer_radius, logit, regression_region, scatter_cells
)
from ..losses import focal_loss, masked_l1
from .base import HeadSpec, Results, Task, boxes_to_original, xyxy_to_xywh
from .detection import HEATMAP_PRIOR, MAX_OBJECTS, DetectionTask, decode_centers

POSE_OFFSETS = ("per_joint", "shared")  # keypoint sub-cell offsets: one pair per joint, or one in all
KEYPOINT_THRESHOLD = 0.1  # a keypoint-heatmap peak below this never replaces a regressed keypoint
SNAP_DISTANCE = 0.3  # ... nor one farther than this fraction of the box's longer side
FAR_AWAY = 1e6  # distance given to peaks below the threshold, so that none is nearest
POSE_TOP_K = 20  # persons decoded per image: COCO's keypoint evaluation scores the best 20 (maxDets)
KEYPOINT_CANDIDATES = 32  # highest peaks per joint type that a regressed keypoint may snap to


@dataclass
class Poses(Results):
    """Decoded persons of one image ([K, ...]) or of a batch ([B, K, ...]), best first."""

    boxes: torch.Tensor  # [(B,) K, 4] xyxy in input-image pixels
    scores: torch.Tensor  # [(B,) K] person-center heatmap peak in [0, 1]
    keypoints: torch.Tensor  # [(B,) K, J, 2] (x, y) in input-image pixels
    keypoint_scores: torch.Tensor  # [(B,) K, J] heatmap peak where snapped to one, else 0


def gather_keypoint_offsets(offset: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Sub-cell offsets [B, N, J, 2] at keypoint cells ``index`` [B, N, J] (flat y * w + x).

    ``offset`` is [B, 2 J, h, w] (joint j reads channels 2j, 2j + 1) or [B, 2, h, w] (shared).
    """
    b, channels, h, w = offset.shape
    n = index.shape[1]
    per_joint = offset.reshape(b, channels // 2, 2, h * w)
    if channels // 2 != NUM_KEYPOINTS:  # shared: one pair for all joints (an exported Expand copies)
        per_joint = per_joint.expand(b, NUM_KEYPOINTS, 2, h * w)
    where = index.permute(0, 2, 1)[:, :, None, :].expand(b, NUM_KEYPOINTS, 2, n)  # [B, J, 2, N]
    return per_joint.gather(3, where).permute(0, 3, 1, 2)  # [B, N, J, 2]


def snap_to_peaks(regressed: torch.Tensor, boxes: torch.Tensor, heatmap: torch.Tensor, offset: torch.Tensor,
                  k: int = KEYPOINT_CANDIDATES,
                  threshold: float = KEYPOINT_THRESHOLD) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace each regressed keypoint by the nearest keypoint-heatmap peak of its joint, as
    CenterNet does, where that peak (one of the ``k`` best of its joint) scores >= ``threshold``, lies inside the person's box
    and within ``SNAP_DISTANCE`` of the box's longer side; else keep the regressed position.

    ``regressed`` [B, K, J, 2] and ``boxes`` [B, K, 4] in grid units; ``heatmap`` [B, J, h, w]
    logits; ``offset`` as in :func:`gather_keypoint_offsets`. Returns keypoints [B, K, J, 2]
    and their scores [B, K, J] (0 where not snapped).
    """
    b, joints, h, w = heatmap.shape
    k = min(k, h * w)
    peaks = find_peaks(heatmap, fill=NOT_A_PEAK).reshape(b, joints, h * w)  # on logits: sigmoid at the top-k only
    logit_score, index = peaks.topk(k, dim=2)  # [B, J, Kc]
    score = torch.sigmoid(logit_score)
    row = torch.div(index, w, rounding_mode="floor")
    cells = torch.stack([index - row * w, row], dim=-1).to(regressed.dtype)  # [B, J, Kc, 2]
    sub_cell = gather_keypoint_offsets(offset, index.permute(0, 2, 1)).permute(0, 2, 1, 3)  # [B, J, Kc, 2]
    candidates = cells + sub_cell
    # x and y apart: one broadcast of [B, K, J, 1] against [B, 1, J, Kc] each, not a norm over
    # a trailing axis of 2 (slower in eager and onnxruntime, docs/decoding.md)
    dx = regressed[:, :, :, None, 0] - candidates[:, None, :, :, 0]
    dy = regressed[:, :, :, None, 1] - candidates[:, None, :, :, 1]
    distance = torch.sqrt(dx * dx + dy * dy)  # [B, K, J, Kc]
    distance = distance + (score < threshold)[:, None].to(distance.dtype) * FAR_AWAY
    nearest_distance, nearest = distance.min(dim=-1)  # [B, K, J]
    persons = regressed.shape[1]
    pick = nearest[..., None, None].expand(b, persons, joints, 1, 2)
    nearest_xy = candidates[:, None].expand(b, persons, joints, k, 2).gather(3, pick)[:, :, :, 0]  # [B, K, J, 2]
    nearest_score = score[:, None].expand(b, persons, joints, k).gather(3, nearest[..., None])[..., 0]
    left, top, right, bottom = (boxes[..., i, None] for i in range(4))  # each [B, K, 1]
    reach = SNAP_DISTANCE * torch.maximum(right - left, bottom - top)
    x, y = nearest_xy[..., 0], nearest_xy[..., 1]
    use = ((nearest_score >= threshold) & (x >= left) & (x <= right) & (y >= top) & (y <= bottom)
           & (nearest_distance <= reach))  # [B, K, J]
    keypoints = torch.where(use[..., None], nearest_xy, regressed)
    return keypoints, torch.where(use, nearest_score, torch.zeros_like(nearest_score))


def decode_poses(outputs: Mapping[str, torch.Tensor], output_stride: int, person_label: int = 0,
                 k: int = POSE_TOP_K, candidates: int = KEYPOINT_CANDIDATES,
                 threshold: float = KEYPOINT_THRESHOLD) -> Poses:
    """Batched persons (the ``k`` best person centers) with keypoints from the raw output dict
    (detection + pose outputs)."""
    det, pose = DetectionTask.name, PoseTask.name
    person_heatmap = outputs[f"{det}.heatmap"][:, person_label:person_label + 1]  # [B, 1, h, w]
    centers = decode_centers(person_heatmap, outputs[f"{det}.size"], outputs[f"{det}.offset"], k)
    b, persons = centers["index"].shape
    displacement = gather_cells(outputs[f"{pose}.displacement"].float(), centers["index"])  # [B, K, 2 J]
    cell = torch.stack([centers["x"], centers["y"]], dim=-1).to(displacement.dtype)  # [B, K, 2]
    regressed = cell[:, :, None, :] + displacement.reshape(b, persons, NUM_KEYPOINTS, 2)
    keypoints, keypoint_scores = snap_to_peaks(regressed, centers["boxes"], outputs[f"{pose}.heatmap"].float(),
                                               outputs[f"{pose}.offset"].float(), candidates, threshold)
    return Poses(boxes=centers["boxes"] * output_stride, scores=centers["score"],
                 keypoints=keypoints * output_stride, keypoint_scores=keypoint_scores)


class PoseTask(Task):
    """CenterNet multi-pose for the person class ``person_label`` of the detection task.

    Targets per person (first ``max_objects``): its center cell ``index``, the displacement to
    each labelled joint (COCO visibility v > 0, inside the image); per labelled joint a
    Gaussian on its heatmap (radius of the person's box, as CenterNet), its cell and offset;
    with ``regression="region"`` also dense ``displacement_map`` and ``displacement_weight``
    over each person's regression region.
    """

    name = "pose"
    requires = (DetectionTask.name,)
    result_type = Poses
    ignored_targets = {"heatmap": 0.0, "heatmap_weight": 0.0, "joint_mask": 0.0, "displacement_weight": 0.0}
    min_cells = max(POSE_TOP_K, KEYPOINT_CANDIDATES)
    requirement_reason = "keypoints are regressed from the person centers of the detection heatmap"
    default_term_weights = {"heatmap": 1.0, "displacement": 1.0, "offset": 1.0}
    # displacements are read at person centers (the detection heatmap), offsets at keypoint peaks
    distilled = {"heatmap": ("heatmap", None, "heatmap"),
                 "displacement": ("regression", "det.heatmap", "displacement"),
                 "offset": ("regression", "pose.heatmap", "offset")}

    def __init__(self, in_channels: int, head_channels: int = 64, person_label: int = 0,
                 pose_offsets: str = "per_joint", max_objects: int = MAX_OBJECTS, weight: float = 1.0,
                 term_weights: Mapping[str, float] | None = None, head_trunk: str = "per_output",
                 head_conv: str = "dense",
                 regression: str = "center") -> None:
        if regression not in REGRESSION:
            raise ValueError(f"pose regression must be one of {REGRESSION}, got {regression!r}")
        if pose_offsets not in POSE_OFFSETS:
            raise ValueError(f"pose_offsets must be one of {POSE_OFFSETS}, got {pose_offsets!r}")
        offset_groups = NUM_KEYPOINTS if pose_offsets == "per_joint" else 1
        heads = {
            "heatmap": HeadSpec(NUM_KEYPOINTS, focal_prior_bias(HEATMAP_PRIOR)),
            "displacement": HeadSpec(2 * NUM_KEYPOINTS),
            "offset": HeadSpec(2 * offset_groups),
        }
        super().__init__(heads, in_channels, head_channels, weight, term_weights, head_trunk, head_conv)
        self.person_label = person_label
        self.pose_offsets = pose_offsets
        self.max_objects = max_objects
        self.regression = regression

    def check_tasks(self, tasks: Mapping[str, Task]) -> None:
        super().check_tasks(tasks)
        num_classes = getattr(tasks[DetectionTask.name], "num_classes", 0)
        if not 0 <= self.person_label < num_classes:
            raise ValueError(f"pose: person_label {self.person_label} is not a class of the detection "
                             f"task ({num_classes} classes)")

    def encode_sample(self, sample: Sample, output_stride: int) -> dict[str, torch.Tensor]:
        height, width = sample.size
        h, w = height // output_stride, width // output_stride
        heatmap = torch.zeros((NUM_KEYPOINTS, h, w))  # [J, h, w]
        index = torch.zeros(self.max_objects, dtype=torch.int64)  # [K] person center cell
        displacement = torch.zeros((self.max_objects, NUM_KEYPOINTS, 2))  # [K, J, 2] joint - center cell
        joint_mask = torch.zeros((self.max_objects, NUM_KEYPOINTS))  # [K, J] 1 where a joint is labelled
        joint_index = torch.zeros((self.max_objects, NUM_KEYPOINTS), dtype=torch.int64)  # [K, J] joint cell
        joint_offset = torch.zeros((self.max_objects, NUM_KEYPOINTS, 2))  # [K, J, 2] joint - joint cell
        centers = box_centers(sample.boxes, output_stride, (h, w))
        persons = (centers["valid"] & (sample.labels == self.person_label)).nonzero().flatten()
        for slot, i in enumerate(persons[: self.max_objects].tolist()):
            center_cell = centers["cell"][i]
            index[slot] = center_cell[1] * w + center_cell[0]
            box_w, box_h = centers["size"][i].tolist()
            radius = integer_radius(box_h, box_w)
            joints = sample.keypoints[i, :, :2].float() / output_stride  # [J, 2] grid units
            cells = joints.floor().long()
            labelled = ((sample.keypoints[i, :, 2] > 0) & (cells[:, 0] >= 0) & (cells[:, 0] < w)
                        & (cells[:, 1] >= 0) & (cells[:, 1] < h))
            found = labelled.nonzero().flatten()  # the labelled joints, all written at once
            displacement[slot, found] = joints[found] - center_cell
            joint_mask[slot, found] = 1.0
            joint_index[slot, found] = cells[found, 1] * w + cells[found, 0]
            joint_offset[slot, found] = joints[found] - cells[found]
            for j, (cell_x, cell_y) in zip(found.tolist(), cells[found].tolist()):
                draw_gaussian(heatmap[j], (cell_x, cell_y), radius)
        weight = torch.maximum(cell_weight(sample.crowd, output_stride), heatmap.amax(0, keepdim=True).eq(1.0).float())
        key = self.key
        targets = {key("heatmap"): heatmap, key("heatmap_weight"): weight, key("index"): index,
                   key("displacement"): displacement, key("joint_mask"): joint_mask,
                   key("joint_index"): joint_index, key("offset"): joint_offset}
        if self.regression == "region":
            targets.update(self._encode_regions(centers, persons[: self.max_objects].tolist(), displacement,
                                                joint_mask, (h, w)))
        return targets

    def _encode_regions(self, centers: dict[str, torch.Tensor], persons: list[int], displacement: torch.Tensor,
                        joint_mask: torch.Tensor, grid: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Dense displacements [2 J, h, w] (joint - cell corner) over each person's regression
        region, and their weights [J, h, w]: the region's Gaussian where the joint is labelled."""
        h, w = grid
        displacement_map = torch.zeros((NUM_KEYPOINTS, 2, h, w))
        joint_weight = torch.zeros((NUM_KEYPOINTS, h, w))
        slots = sorted(range(len(persons)), key=lambda s: -float(centers["size"][persons[s]].prod()))
        for slot in slots:  # small persons paint last
            i = persons[slot]
            rows, columns, weight = regression_region(centers["center"][i].tolist(), centers["size"][i].tolist(),
                                                      centers["cell"][i].tolist(), grid)
            joints = displacement[slot] + centers["cell"][i]  # [J, 2] grid units
            displacement_map[:, 0, rows, columns] = joints[:, 0, None, None] - torch.arange(columns.start, columns.stop)
            displacement_map[:, 1, rows, columns] = joints[:, 1, None, None] - torch.arange(rows.start, rows.stop)[:, None]
            joint_weight[:, rows, columns] = weight[None] * joint_mask[slot][:, None, None]
        return {self.key("displacement_map"): displacement_map.reshape(2 * NUM_KEYPOINTS, h, w),
                self.key("displacement_weight"): joint_weight}

    def loss_terms(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                   terms: set[str]) -> dict[str, torch.Tensor]:
        key = self.key
        joint_mask = targets[key("joint_mask")]  # [B, K, J]
        found = {}
        if "heatmap" in terms:
            found["heatmap"] = focal_loss(outputs[key("heatmap")], targets[key("heatmap")],
                                          targets[key("heatmap_weight")])
        if "displacement" in terms and self.regression == "region":
            b, _, h, w = outputs[key("displacement")].shape
            error = (outputs[key("displacement")].float() - targets[key("displacement_map")]).abs()
            error = error.reshape(b, NUM_KEYPOINTS, 2, h, w) * targets[key("displacement_weight")][:, :, None]
            found["displacement"] = error.sum() / (2.0 * joint_mask.sum()).clamp(min=1.0)
        elif "displacement" in terms:
            pred = gather_cells(outputs[key("displacement")], targets[key("index")])  # [B, K, 2 J]
            pred = pred.reshape(*joint_mask.shape, 2)
            found["displacement"] = masked_l1(pred, targets[key("displacement")], joint_mask)
        if "offset" in terms:
            pred = gather_keypoint_offsets(outputs[key("offset")], targets[key("joint_index")])
            found["offset"] = masked_l1(pred, targets[key("offset")], joint_mask)
        return found

    def decode_batched(self, outputs: Mapping[str, torch.Tensor], output_stride: int, k: int = POSE_TOP_K,
                       threshold: float = KEYPOINT_THRESHOLD) -> Poses:
        return decode_poses(outputs, output_stride, self.person_label, k, threshold=threshold)

    def to_coco(self, results: Sequence[Poses], samples: Sequence[Sample],
                category_ids: Sequence[int], min_score: float = 0.0) -> list[dict]:
        """COCO ``keypoints`` results: flat [x, y, 1] * J in original pixels (the third value,
        which COCO's evaluation ignores, is 1 as in CenterNet), plus the person's ``bbox``."""
        entries = []
        category_id = int(category_ids[self.person_label])
        for found, sample in zip(results, samples):
            keep = found.scores >= min_score
            keypoints = sample.to_original(found.keypoints[keep].float())  # [K, J, 2]
            flat = torch.cat([keypoints, torch.ones_like(keypoints[..., :1])], dim=-1).flatten(1)
            boxes = xyxy_to_xywh(boxes_to_original(found.boxes[keep].float(), sample))
            for joints, box, score in zip(flat.tolist(), boxes.tolist(), found.scores[keep].tolist()):
                entries.append({"image_id": sample.image_id, "category_id": category_id,
                                "keypoints": [round(v, 2) for v in joints], "score": float(score),
                                "bbox": [round(v, 2) for v in box]})
        return entries

    def oracle_outputs(self, targets: Mapping[str, torch.Tensor], output_stride: int) -> dict[str, torch.Tensor]:
        key = self.key
        heatmap = targets[key("heatmap")]
        b, _, h, w = heatmap.shape
        joint_mask = targets[key("joint_mask")]  # [B, K, J]
        displacement = torch.zeros((b, 2 * NUM_KEYPOINTS, h, w))
        if self.regression == "region":
            displacement = targets[key("displacement_map")].clone()
        else:
            scatter_cells(displacement, targets[key("index")], targets[key("displacement")].flatten(2),
                          joint_mask.amax(dim=2))
        groups = NUM_KEYPOINTS if self.pose_offsets == "per_joint" else 1
        offset = torch.zeros((b, groups, 2, h * w))
        for i, slot, j in joint_mask.nonzero().tolist():  # slot-major: later joints overwrite in "shared"
            offset[i, j % groups, :, targets[key("joint_index")][i, slot, j]] = targets[key("offset")][i, slot, j]
        return {key("heatmap"): logit(heatmap), key("displacement"): displacement,
                key("offset"): offset.reshape(b, 2 * groups, h, w)}
