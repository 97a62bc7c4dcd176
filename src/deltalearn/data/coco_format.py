"""COCO annotation files at the format level: reading the JSON, checking its fields and
category records, decoding segmentations (polygons, RLE) with pycocotools."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from .errors import AnnotationFileError, DataError
from .keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS, SKELETON

_JSON_TYPE_NAMES = {dict: "an object", list: "an array", str: "a string", int: "a number",
                    float: "a number", bool: "a boolean", type(None): "null"}


def decode_segmentation(segmentation: Any, box: Sequence[float], height: int, width: int,
                        ) -> np.ndarray:
    """[H, W] bool mask from COCO polygons, uncompressed or compressed RLE; the filled box if empty.

    Raises ValueError with a one-line reason for a segmentation that is malformed or whose
    size differs from the image.
    """
    if isinstance(segmentation, dict):
        rle = _rle(segmentation, height, width)
    elif segmentation is None or (
            isinstance(segmentation, list) and all(isinstance(p, list) for p in segmentation)):
        polygons = _polygons(segmentation or [])
        rle = (mask_utils.merge(mask_utils.frPyObjects(polygons, height, width)) if polygons
               else _box_rle(box, height, width))  # no segmentation: the filled box
    else:
        raise ValueError(f"segmentation must be polygons or RLE, found {_json_type(segmentation)}")
    try:
        with warnings.catch_warnings():  # pycocotools' Masks.__array__ predates numpy 2
            warnings.simplefilter("ignore", DeprecationWarning)
            mask = mask_utils.decode(rle)
    except ValueError as error:  # pycocotools refuses counts that overrun the image
        raise ValueError(f"invalid RLE mask ({error})") from error
    # counts that fall short of H*W leave pycocotools' output partly uninitialised
    if mask.max(initial=0) > 1 or int(mask.sum()) != int(mask_utils.area(rle)):
        raise ValueError("invalid RLE mask (counts do not cover the image)")
    return mask.astype(bool)


def _box_rle(box: Sequence[float], height: int, width: int) -> dict:
    """RLE of the filled box [x, y, w, h]."""
    return mask_utils.frPyObjects(np.asarray([box], dtype=np.float64), height, width)[0]


def _rle(segmentation: dict, height: int, width: int) -> dict:
    """A compressed RLE of the image's size from either RLE form."""
    size, counts = segmentation.get("size"), segmentation.get("counts")
    if size != [height, width]:
        raise ValueError(f"RLE size {size!r} differs from the image size [{height}, {width}]")
    if isinstance(counts, list):  # uncompressed RLE
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError("uncompressed RLE counts must be non-negative integers")
        if sum(counts) != height * width:
            raise ValueError(f"uncompressed RLE counts sum to {sum(counts)}, "
                             f"not {height}*{width} = {height * width} pixels")
        return mask_utils.frPyObjects(segmentation, height, width)
    if isinstance(counts, (str, bytes)):  # compressed RLE
        return {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    raise ValueError(f"RLE counts must be a list or a string, found {_json_type(counts)}")


def _polygons(segmentation: list[list]) -> list[list[float]]:
    """Polygon parts with at least 3 points (smaller ones have no area and are dropped)."""
    polygons = []
    for part in segmentation:
        if not all(is_number(v) for v in part):
            raise ValueError("polygon coordinates must be numbers")
        if len(part) % 2:
            raise ValueError(f"polygon with an odd number ({len(part)}) of coordinates")
        if len(part) >= 6:
            polygons.append([float(v) for v in part])
    return polygons


def read_coco_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON of a COCO annotation file, checked for its top-level structure."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationFileError(path, "annotation file not found" if not path.exists()
                                  else "is not a file")
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except json.JSONDecodeError as error:
        raise AnnotationFileError(
            path, f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}") from error
    except UnicodeDecodeError as error:
        raise AnnotationFileError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from error
    if not isinstance(data, dict):
        raise AnnotationFileError(
            path, f"top level must be an object with images, annotations and categories, "
            f"found {_json_type(data)}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise AnnotationFileError(
                path, f"missing top-level key '{key}' (a COCO file has images, annotations "
                "and categories)")
        if not isinstance(data[key], list):
            raise AnnotationFileError(path, f"'{key}' must be an array, found {_json_type(data[key])}")
    return data


def resolve_categories(wanted: Sequence[str | int], by_id: dict[int, dict], path: Path) -> list[int]:
    """Sorted COCO ids of the categories named (by name or id) in ``wanted``."""
    by_name = {record["name"]: cat_id for cat_id, record in by_id.items()}
    if isinstance(wanted, (str, int)):
        wanted = [wanted]
    chosen = set()
    for item in wanted:
        cat_id = by_name.get(item) if isinstance(item, str) else item
        if cat_id not in by_id or isinstance(cat_id, bool):
            valid = ", ".join(f"{r['name']} ({i})" for i, r in sorted(by_id.items()))
            raise DataError(path, f"unknown category {item!r}; valid categories: {valid}")
        chosen.add(cat_id)
    if not chosen:
        raise DataError(path, "no category selected (categories is empty)")
    return sorted(chosen)


def check_keypoint_names(record: dict, path: Path) -> None:
    names = record["keypoints"]
    if list(names) != list(KEYPOINT_NAMES):
        name = record["name"]
        if len(names) != NUM_KEYPOINTS:
            problem = f"has {len(names)} keypoints"
        else:
            k = next(i for i, (a, b) in enumerate(zip(names, KEYPOINT_NAMES)) if a != b)
            problem = f"has keypoint {k} {names[k]!r} where COCO has {KEYPOINT_NAMES[k]!r}"
        raise AnnotationFileError(
            path, f"category {name!r} {problem}; only COCO's {NUM_KEYPOINTS} person keypoints "
            "in COCO order are supported")


def skeleton_of(record: dict, path: Path) -> tuple[tuple[int, int], ...]:
    """The category's limbs as 1-based keypoint pairs (COCO's if the file has none)."""
    limbs = record.get("skeleton")
    if limbs is None:
        return SKELETON
    valid = isinstance(limbs, list) and all(
        isinstance(limb, list) and len(limb) == 2
        and all(isinstance(k, int) and 1 <= k <= NUM_KEYPOINTS for k in limb) for limb in limbs)
    if not valid:
        raise AnnotationFileError(path, f"category {record['name']!r}: skeleton must be pairs of "
                                  f"keypoint numbers 1..{NUM_KEYPOINTS}")
    return tuple((a, b) for a, b in limbs)


def require_type(value: Any, kind: type, where: str, path: Path) -> None:
    if not isinstance(value, kind):
        raise AnnotationFileError(
            path, f"{where} must be {_JSON_TYPE_NAMES[kind]}, found {_json_type(value)}")


def json_field(record: dict, key: str, kind: type, where: str, path: Path) -> Any:
    """record[key], which must exist and have the JSON type of ``kind`` (ints: integral numbers)."""
    if key not in record:
        raise AnnotationFileError(path, f"{where}: missing '{key}'")
    value = record[key]
    if kind is int and isinstance(value, float) and value.is_integer():
        value = record[key] = int(value)  # 640.0 written by some tools
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AnnotationFileError(path, f"{where}: '{key}' must be {_JSON_TYPE_NAMES[kind]}, "
                                  f"found {_json_type(value)}")
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _json_type(value: Any) -> str:
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
