"""Shared fixtures: a tiny hand-written COCO data folder and the ground truth it encodes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from deltalearn.data.keypoints import person_category

TINY_HEIGHT, TINY_WIDTH = 40, 48


def _rectangles(*boxes: tuple[int, int, int, int]) -> np.ndarray:
    """[H, W] bool with the pixels rows y0..y1-1, cols x0..x1-1 of each (x0, y0, x1, y1) set."""
    mask = np.zeros((TINY_HEIGHT, TINY_WIDTH), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE, written out by hand: column-major runs, starting with zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": list(mask.shape), "counts": counts}


def _compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": rle["counts"].decode("ascii")}


def _polygon(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def tiny_pixels(image_id: int) -> np.ndarray:
    """[H, W, 3] uint8 content of a tiny image: red = 5*x, green = 6*y, blue = image_id."""
    y, x = np.mgrid[0:TINY_HEIGHT, 0:TINY_WIDTH]
    blue = np.full_like(x, image_id)
    return np.stack([5 * x, 6 * y, blue], axis=-1).astype(np.uint8)


@pytest.fixture
def tiny_coco_truth() -> dict:
    """What the tiny COCO folder encodes, as arrays to compare against."""
    keypoints = np.zeros((17, 3), dtype=np.float32)
    keypoints[0] = (10, 8, 2)  # nose, visible
    keypoints[1] = (12, 7, 1)  # left eye, labelled but occluded
    keypoints[15] = (15, 30, 2)  # left ankle
    return {
        "height": TINY_HEIGHT,
        "width": TINY_WIDTH,
        # one person as two separate polygon parts
        "two_part_mask": _rectangles((2, 2, 10, 10), (30, 20, 40, 30)),
        # an L shape, stored once as compressed and once as uncompressed RLE
        "rle_mask": _rectangles((4, 22, 12, 36), (12, 30, 20, 36)),
        "crowd_mask": _rectangles((38, 0, 48, 12)),
        "keypoints": keypoints,
        "person_mask": _rectangles((8, 4, 18, 34)),
        "empty_keypoint_person_mask": _rectangles((25, 5, 35, 25)),
        "box_mask": _rectangles((8, 8, 24, 20)),  # an annotation without segmentation
        "pixels": tiny_pixels,
    }


@pytest.fixture
def tiny_coco(tmp_path: Path, tiny_coco_truth: dict) -> Path:
    """A data folder (annotations.json + images/) with 4 PNG images of 48x40.

    a.png (id 10): person 101 as a two-part polygon, car 102 as compressed RLE, crowd 103.
    b.png (id 20): person 201 with keypoints (v 0/1/2), person 202 with num_keypoints 0,
                   dog 203 as uncompressed RLE (the same mask as car 102).
    c.png (id 30): no annotations.
    d.png (id 40): dog 401 without segmentation (its box is its mask).
    Category ids are 1 (person), 5 (car), 9 (dog), listed out of order.
    """
    truth = tiny_coco_truth
    root = tmp_path / "tiny"
    (root / "images").mkdir(parents=True)
    images = [(10, "a.png"), (20, "b.png"), (30, "c.png"), (40, "d.png")]
    for image_id, name in images:
        Image.fromarray(tiny_pixels(image_id)).save(root / "images" / name)

    def box_of(mask: np.ndarray) -> list[float]:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]

    def ann(ann_id: int, image_id: int, category_id: int, mask: np.ndarray, segmentation, **extra) -> dict:
        return {"id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0,
                "bbox": box_of(mask), "area": float(mask.sum()), "segmentation": segmentation, **extra}

    no_keypoints = {"keypoints": [0] * 51, "num_keypoints": 0}
    annotations = [
        ann(101, 10, 1, truth["two_part_mask"], [_polygon(2, 2, 10, 10), _polygon(30, 20, 40, 30)],
            **no_keypoints),
        ann(102, 10, 5, truth["rle_mask"], _compressed_rle(truth["rle_mask"])),
        ann(103, 10, 1, truth["crowd_mask"], _uncompressed_rle(truth["crowd_mask"]),
            **no_keypoints) | {"iscrowd": 1},
        ann(201, 20, 1, truth["person_mask"], [_polygon(8, 4, 18, 34)],
            keypoints=truth["keypoints"].flatten().astype(int).tolist(), num_keypoints=3),
        ann(202, 20, 1, truth["empty_keypoint_person_mask"], [_polygon(25, 5, 35, 25)], **no_keypoints),
        ann(203, 20, 9, truth["rle_mask"], _uncompressed_rle(truth["rle_mask"])),
        ann(401, 40, 9, truth["box_mask"], []),
    ]
    coco = {
        "info": {"description": "deltalearn tiny test set"},
        "images": [{"id": i, "file_name": n, "width": TINY_WIDTH, "height": TINY_HEIGHT} for i, n in images],
        "annotations": annotations,
        "categories": [
            {"id": 9, "name": "dog", "supercategory": "animal"},
            person_category(1),
            {"id": 5, "name": "car", "supercategory": "vehicle"},
        ],
    }
    (root / "annotations.json").write_text(json.dumps(coco, indent=1))
    return root


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from a second thread; on a busy CPU two threads can crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

