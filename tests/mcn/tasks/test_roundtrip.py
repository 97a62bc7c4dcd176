"""Encode -> oracle outputs -> decode -> COCO results -> pycocotools, against ground truth
built independently from the same samples.

Box AP must be exactly 1.0. Keypoint AP and person IoU are limited only by the stride-4 output
grid; their ceilings are measured here for both keypoint-offset layouts of the pose task:

  per_joint keypoint offsets: keypoint AP 1.000 (nothing is lost)
  shared keypoint offset:     keypoint AP 0.72 on these samples (face keypoints of small
                              persons share a cell and overwrite each other's offset)
  person IoU (seg, stride 4): 0.95 (mean IoU with background and car 0.97)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deltalearn.data.keypoints import NUM_KEYPOINTS, person_category
from deltalearn.data.sample import Sample
from deltalearn.evaluation import ConfusionMatrix, evaluate_coco, segmentation_metrics
from deltalearn.mcn.tasks import DetectionTask, PoseTask, SegmentationTask

STRIDE = 4
SIZE = 256  # input side in px
TILE = 64  # one object per tile, so no two centers share a cell
CATEGORY_IDS = [1, 3]  # label 0 person -> COCO id 1, label 1 car -> COCO id 3
PERSON, CAR = 0, 1
# A standing person's keypoints as fractions (x, y) of its box, in COCO order.
POSE_TEMPLATE = np.array([
    (0.50, 0.08), (0.56, 0.06), (0.44, 0.06), (0.62, 0.08), (0.38, 0.08),
    (0.72, 0.22), (0.28, 0.22), (0.82, 0.38), (0.18, 0.38), (0.86, 0.50), (0.14, 0.50),
    (0.62, 0.55), (0.38, 0.55), (0.62, 0.75), (0.38, 0.75), (0.62, 0.93), (0.38, 0.93),
])


def _ellipse_mask(box: np.ndarray, size: int) -> np.ndarray:
    """[size, size] bool: the ellipse inscribed in xyxy ``box``, sampled at pixel centers."""
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0


def make_sample(seed: int, image_id: int, letterbox: bool = False) -> Sample:
    """A 256 px sample: up to 10 objects in distinct 64 px tiles, persons large and small
    (small ones 10-14 px wide, their face keypoints 1-3 px apart), boxes at sub-pixel positions.

    ``letterbox``: the sample stands for a 512 x 256 original shrunk by 0.5 and padded by 64 px
    at the top, so that results must be mapped back.
    """
    rng = np.random.default_rng(seed)
    rows = range(1, 3) if letterbox else range(4)
    tiles = [(tx, ty) for ty in rows for tx in range(4)]
    chosen = rng.permutation(len(tiles))[: min(10, len(tiles))]
    boxes, labels, masks, keypoints = [], [], [], []
    for n, t in enumerate(chosen):
        tx, ty = tiles[t]
        label = PERSON if n % 3 != 2 else CAR
        small = label == PERSON and n % 2 == 0
        w, h = (rng.uniform(10, 14), rng.uniform(20, 28)) if small else (rng.uniform(20, 40), rng.uniform(36, 60))
        x1 = tx * TILE + rng.uniform(1, TILE - w - 1)
        y1 = ty * TILE + rng.uniform(1, TILE - h - 1)
        box = np.array([x1, y1, x1 + w, y1 + h])
        joints = np.zeros((NUM_KEYPOINTS, 3))
        if label == PERSON:
            fractions = POSE_TEMPLATE + rng.uniform(-0.02, 0.02, POSE_TEMPLATE.shape)
            joints[:, :2] = box[:2] + fractions * [w, h]
            joints[:, 2] = rng.choice([0, 1, 2], NUM_KEYPOINTS, p=[0.1, 0.2, 0.7])
            joints[joints[:, 2] == 0, :2] = 0.0
        boxes.append(box)
        labels.append(label)
        masks.append(_ellipse_mask(box, SIZE))
        keypoints.append(joints)
    return Sample(
        image=torch.zeros((3, SIZE, SIZE), dtype=torch.uint8),
        boxes=torch.tensor(np.array(boxes), dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.int64),
        masks=torch.tensor(np.array(masks)),
        keypoints=torch.tensor(np.array(keypoints), dtype=torch.float32),
        crowd=torch.zeros((SIZE, SIZE), dtype=torch.bool),
        image_id=image_id,
        orig_size=(256, 512) if letterbox else (SIZE, SIZE),
        scale=0.5 if letterbox else 1.0,
        offset=(0.0, 64.0) if letterbox else (0.0, 0.0),
    )


def coco_ground_truth(samples: list[Sample]) -> dict:
    """COCO dataset dict of the samples in original-image coordinates (written independently
    of the tasks' code: only Sample.to_original is shared)."""
    images, annotations = [], []
    for sample in samples:
        images.append({"id": sample.image_id, "height": sample.orig_size[0], "width": sample.orig_size[1]})
        for i in range(len(sample.labels)):
            corners = sample.to_original(sample.boxes[i].view(2, 2)).flatten().tolist()
            joints = sample.keypoints[i].clone()
            labelled = joints[:, 2] > 0
            joints[labelled, :2] = sample.to_original(joints[labelled, :2])
            annotations.append({
                "id": len(annotations) + 1, "image_id": sample.image_id, "iscrowd": 0,
                "category_id": CATEGORY_IDS[int(sample.labels[i])],
                "bbox": [corners[0], corners[1], corners[2] - corners[0], corners[3] - corners[1]],
                "area": float(sample.masks[i].sum()) / sample.scale ** 2,
                "keypoints": joints.flatten().tolist(), "num_keypoints": int(labelled.sum()),
            })
    categories = [person_category(CATEGORY_IDS[PERSON]), {"id": CATEGORY_IDS[CAR], "name": "car"}]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return [make_sample(seed, image_id=seed + 1, letterbox=seed % 4 == 3) for seed in range(12)]


@pytest.fixture(scope="module")
def det_outputs(samples: list[Sample]) -> dict[str, torch.Tensor]:
    det = DetectionTask(num_classes=2, in_channels=8)
    return det.oracle_outputs(det.encode(samples, STRIDE), STRIDE)


def test_box_ap_is_one(samples: list[Sample], det_outputs: dict[str, torch.Tensor]) -> None:
    det = DetectionTask(num_classes=2, in_channels=8)
    results = det.to_coco(det.decode(det_outputs, STRIDE), samples, CATEGORY_IDS)
    metrics = evaluate_coco(coco_ground_truth(samples), results, "bbox")
    assert metrics["ap"] == pytest.approx(1.0)
    assert metrics["ap50"] == pytest.approx(1.0)


def test_box_ap_is_one_with_region_regression(samples: list[Sample]) -> None:
    det = DetectionTask(num_classes=2, in_channels=8, box_regression="region")
    outputs = det.oracle_outputs(det.encode(samples, STRIDE), STRIDE)
    results = det.to_coco(det.decode(outputs, STRIDE), samples, CATEGORY_IDS)
    metrics = evaluate_coco(coco_ground_truth(samples), results, "bbox")
    assert metrics["ap"] == pytest.approx(1.0)


def keypoint_ap(samples: list[Sample], det_outputs: dict[str, torch.Tensor], pose_offsets: str) -> dict:
    pose = PoseTask(in_channels=8, person_label=PERSON, pose_offsets=pose_offsets)
    outputs = {**det_outputs, **pose.oracle_outputs(pose.encode(samples, STRIDE), STRIDE)}
    results = pose.to_coco(pose.decode(outputs, STRIDE), samples, CATEGORY_IDS)
    return evaluate_coco(coco_ground_truth(samples), results, "keypoints")


def test_keypoint_ap_ceiling_per_joint_offsets(samples: list[Sample], det_outputs: dict[str, torch.Tensor]) -> None:
    metrics = keypoint_ap(samples, det_outputs, "per_joint")
    print(f"keypoint AP ceiling, per-joint offsets: {metrics['ap']:.4f}")
    assert metrics["ap"] == pytest.approx(1.0, abs=1e-3)


def test_keypoint_ap_ceiling_shared_offset(samples: list[Sample], det_outputs: dict[str, torch.Tensor]) -> None:
    metrics = keypoint_ap(samples, det_outputs, "shared")
    print(f"keypoint AP ceiling, shared offset: {metrics['ap']:.4f}")
    assert metrics["ap"] == pytest.approx(0.72, abs=0.04)  # face keypoints of small persons collide


def test_person_iou_ceiling(samples: list[Sample]) -> None:
    seg = SegmentationTask(num_classes=2, in_channels=8)
    targets = seg.encode(samples, STRIDE)
    decoded = seg.decode(seg.oracle_outputs(targets, STRIDE), STRIDE)
    matrix = ConfusionMatrix(num_classes=3)
    for found, sample in zip(decoded, samples):
        matrix.update(found.labels, sample.semantic_mask())
    metrics = segmentation_metrics(matrix, person_label=PERSON)
    print(f"person IoU ceiling at stride 4: {metrics['seg_iou']:.4f}, mIoU {metrics['seg_miou']:.4f}")
    assert metrics["seg_iou"] == pytest.approx(0.95, abs=0.02)  # bilinear logits on the 4 px grid
    assert metrics["seg_miou"] == pytest.approx(0.97, abs=0.02)
