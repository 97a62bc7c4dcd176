"""COCO annotation files (instances_*.json, person_keypoints_*.json) as a dataset of Samples.

Loading only reads the JSON and indexes it with dicts; each annotation is checked and its
mask decoded (pycocotools) when its image is loaded. A sample that fails (bad annotation,
missing or corrupt image, size that contradicts the file) raises ``DataError`` when
``strict``, else it is skipped: one warning, an entry in ``dataset.skipped``, and
``__getitem__`` returns None, which ``collate_samples`` drops.

Rules chosen here:

- A box may stick out of its image by ``BOX_TOLERANCE`` px (real COCO has float rounding
  at the edges); further out is an error. Boxes are then clipped to the image. A box with
  no area after clipping (width or height <= 0) is dropped with its whole instance and
  counted in ``dropped_boxes``, with one warning per image.
- An annotation without segmentation (or only polygons of fewer than 3 points) gets its
  filled box as mask.
- ``iscrowd`` annotations are not objects: their pixels go to ``Sample.crowd``.
- Annotations of categories outside the selected subset are dropped (crowd ones too).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .coco_format import (
    check_keypoint_names,
    decode_segmentation,
    is_number,
    json_field,
    read_coco_json,
    require_type,
    resolve_categories,
    skeleton_of,
)
from .errors import AnnotationError, AnnotationFileError, DataError, DataWarning
from .io import load_rgb
from .keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from .sample import Sample, empty_targets

ANNOTATIONS_FILE = "annotations.json"  # layout of a --data DIR: DIR/annotations.json + DIR/images/
IMAGES_DIR = "images"
BOX_TOLERANCE = 1.0  # px a box may extend past the image border before it is an error



class CocoDataset(torch.utils.data.Dataset):
    """One ``Sample`` per image of a COCO annotation file; see the module docstring."""

    def __init__(
        self,
        ann_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        categories: Sequence[str | int] | None = None,
        transforms: Callable[[Sample], Sample] | None = None,
        strict: bool = False,
        tasks: Sequence[str] | None = None,
    ) -> None:
        self.ann_file = Path(ann_file)
        self.tasks = tuple(tasks) if tasks is not None else None  # labelled tasks of every sample; None: all
        self.image_dir = Path(image_dir)
        self.transforms = transforms
        self.strict = strict
        self.skipped: list[tuple[str, str]] = []  # (image file, one-line reason), once per sample
        self._skipped_index: set[int] = set()
        self._dropped: dict[int, int] = {}  # sample index -> degenerate boxes dropped
        # decoded, untransformed samples kept after their first load (set ``cache_samples``):
        # for small data sets that fit in memory, e.g. 2,000 generated 128 px images 0.2-0.25 GB;
        # every DataLoader worker keeps its own copy
        self.cache_samples = False
        self._cache: dict[int, Sample] = {}

        self.coco: dict[str, Any] = read_coco_json(self.ann_file)  # the raw JSON, for evaluation
        if not self.image_dir.is_dir():
            raise DataError(self.image_dir, "image folder not found")
        self.images: list[dict] = self._index_images()
        self._select_categories(categories)
        self._anns_by_image: dict[int, list[dict]] = self._index_annotations()

    @classmethod
    def from_dir(cls, data_dir: str | os.PathLike, **kwargs: Any) -> CocoDataset:
        """A data folder holding ``annotations.json`` and ``images/``."""
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise AnnotationFileError(data_dir, "data folder not found")
        ann_file = data_dir / ANNOTATIONS_FILE
        if not ann_file.is_file():
            raise AnnotationFileError(
                ann_file, f"annotation file not found (a data folder holds {ANNOTATIONS_FILE} "
                f"and {IMAGES_DIR}/)")
        return cls(ann_file, data_dir / IMAGES_DIR, **kwargs)

    # ----------------------------------------------------------------- indexing at load time

    def _index_images(self) -> list[dict]:
        """Image records in file order; structure errors raise, nothing to skip to."""
        images, seen = [], set()
        for i, record in enumerate(self.coco["images"]):
            where = f"images[{i}]"
            require_type(record, dict, where, self.ann_file)
            image_id = json_field(record, "id", int, where, self.ann_file)
            json_field(record, "file_name", str, where, self.ann_file)
            for key in ("width", "height"):
                value = json_field(record, key, int, where, self.ann_file)
                if value <= 0:
                    raise AnnotationFileError(
                        self.ann_file, f"image {image_id}: {key} {value} is not positive")
            if image_id in seen:
                raise AnnotationFileError(self.ann_file, f"image id {image_id} appears twice")
            seen.add(image_id)
            images.append(record)
        return images

    def _select_categories(self, wanted: Sequence[str | int] | None) -> None:
        """Contiguous labels in sorted COCO id order, optionally for a subset by name or id."""
        by_id: dict[int, dict] = {}
        for i, record in enumerate(self.coco["categories"]):
            where = f"categories[{i}]"
            require_type(record, dict, where, self.ann_file)
            cat_id = json_field(record, "id", int, where, self.ann_file)
            json_field(record, "name", str, where, self.ann_file)
            if cat_id in by_id:
                raise AnnotationFileError(self.ann_file, f"category id {cat_id} appears twice")
            by_id[cat_id] = record
        self._known_category_ids = frozenset(by_id)
        selected = sorted(by_id) if wanted is None else resolve_categories(wanted, by_id, self.ann_file)
        self.category_ids: list[int] = selected  # label -> COCO category id
        self.category_names: list[str] = [by_id[c]["name"] for c in selected]
        self._label_of: dict[int, int] = {cat_id: label for label, cat_id in enumerate(selected)}

        with_keypoints = [by_id[c] for c in selected if by_id[c].get("keypoints")]
        for record in with_keypoints:
            check_keypoint_names(record, self.ann_file)
        self._keypoint_category_ids = frozenset(r["id"] for r in with_keypoints)
        self.keypoint_names: tuple[str, ...] = KEYPOINT_NAMES if with_keypoints else ()
        self.skeleton: tuple[tuple[int, int], ...] = (
            skeleton_of(with_keypoints[0], self.ann_file) if with_keypoints else ())

    def _index_annotations(self) -> dict[int, list[dict]]:
        """image id -> its annotations; annotations of no image raise (strict) or are skipped."""
        by_image: dict[int, list[dict]] = {record["id"]: [] for record in self.images}
        orphans = []
        for i, ann in enumerate(self.coco["annotations"]):
            where = f"annotations[{i}]"
            require_type(ann, dict, where, self.ann_file)
            ann_id = json_field(ann, "id", int, where, self.ann_file)
            image_id = ann.get("image_id")
            if image_id in by_image and not isinstance(image_id, bool):
                by_image[image_id].append(ann)
                continue
            error = AnnotationError(self.ann_file, f"image_id {image_id!r} matches no image", ann_id)
            if self.strict:
                raise error
            orphans.append(error)
        if orphans:
            self.skipped.extend((str(self.ann_file), str(e)) for e in orphans)
            warnings.warn(f"{len(orphans)} annotation(s) ignored; first: {orphans[0]}", DataWarning,
                          stacklevel=3)
        return by_image

    # ------------------------------------------------------------------------- samples

    @property
    def keypoint_category_ids(self) -> frozenset[int]:
        """COCO ids of the selected categories that define keypoints (person)."""
        return self._keypoint_category_ids

    @property
    def has_keypoints(self) -> bool:
        """Whether a selected category carries COCO's 17 person keypoints."""
        return bool(self.keypoint_names)

    @property
    def dropped_boxes(self) -> int:
        """Instances dropped so far for a box without area after clipping."""
        return sum(self._dropped.values())

    def __len__(self) -> int:
        return len(self.images)

    def image_path(self, index: int) -> Path:
        return self.image_dir / self.images[index]["file_name"]

    def __getitem__(self, index: int) -> Sample | None:
        """The transformed sample, or None for a bad sample when not strict."""
        try:
            sample = self._cache.get(index) if self.cache_samples else None
            if sample is None:
                sample = self.load(index)
                if self.cache_samples:
                    self._cache[index] = sample
        except DataError as error:
            if self.strict:
                raise
            self.record_skip(index, error)
            return None
        if self.cache_samples:  # a shallow copy: a transform that sets attributes leaves the cache as it is
            sample = copy.copy(sample)
        return self.transforms(sample) if self.transforms is not None else sample

    def load(self, index: int) -> Sample:
        """The untransformed sample; raises DataError whatever ``strict`` says."""
        record = self.images[index]
        path = self.image_path(index)
        anns = self._anns_by_image[record["id"]]
        height, width = record["height"], record["width"]
        for ann in anns:
            self._check_annotation(ann, record)
        pixels = load_rgb(path)
        if pixels.shape[:2] != (height, width):
            raise AnnotationError(
                path, f"image is {pixels.shape[1]}x{pixels.shape[0]} (width x height) but "
                f"{self.ann_file} says {width}x{height}")
        targets, ann_ids, dropped = self._targets(anns, height, width)
        if dropped and index not in self._dropped:
            warnings.warn(f"{path}: dropped {dropped} annotation(s) whose box has no area inside "
                          "the image", DataWarning, stacklevel=3)
        self._dropped[index] = dropped
        return Sample(
            image=torch.from_numpy(pixels).permute(2, 0, 1).contiguous(),
            **targets,
            image_id=record["id"],
            file_name=record["file_name"],
            orig_size=(height, width),
            scale=1.0,
            offset=(0.0, 0.0),
            ann_ids=ann_ids,
            tasks=self.tasks,
        )

    def record_skip(self, index: int, error: DataError) -> None:
        if index in self._skipped_index:
            return
        self._skipped_index.add(index)
        self.skipped.append((self.images[index]["file_name"], str(error)))
        warnings.warn(f"skipping sample: {error}", DataWarning, stacklevel=3)

    def _check_annotation(self, ann: dict, image: dict) -> None:
        """Raise AnnotationError naming the annotation file and id for a rule broken."""
        def fail(problem: str) -> AnnotationError:
            return AnnotationError(self.ann_file, problem, ann["id"])

        cat_id = ann.get("category_id")
        if cat_id not in self._known_category_ids or isinstance(cat_id, bool):
            known = ", ".join(str(c) for c in sorted(self._known_category_ids))
            raise fail(f"unknown category id {cat_id!r} (the file defines {known})")
        box = ann.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(is_number(v) for v in box)):
            raise fail(f"box must be 4 numbers [x, y, width, height], found {box!r}")
        x, y, w, h = (float(v) for v in box)
        text = "[" + ", ".join(repr(round(v, 2)) for v in (x, y, w, h)) + "]"
        if w < 0 or h < 0:
            raise fail(f"box {text} has a negative width or height")
        size = f"{image['width']}x{image['height']} image {image['file_name']}"
        if x < -BOX_TOLERANCE or y < -BOX_TOLERANCE:
            raise fail(f"box {text} starts outside the {size}")
        if x + w > image["width"] + BOX_TOLERANCE or y + h > image["height"] + BOX_TOLERANCE:
            raise fail(f"box {text} extends past the {size}")
        keypoints = ann.get("keypoints")
        if keypoints and not (  # absent or [] means no keypoints
            isinstance(keypoints, list) and len(keypoints) == 3 * NUM_KEYPOINTS
            and all(is_number(v) for v in keypoints)
        ):
            found = f"{len(keypoints)} values" if isinstance(keypoints, list) else repr(keypoints)
            raise fail(f"keypoints must be 3*{NUM_KEYPOINTS} = {3 * NUM_KEYPOINTS} numbers "
                       f"(x, y, visibility per keypoint), found {found}")

    def _targets(self, anns: Iterable[dict], height: int, width: int,
                 ) -> tuple[dict[str, torch.Tensor], list[int], int]:
        """Tensors of the selected, non-degenerate instances, their ids, and the dropped count."""
        targets = empty_targets(height, width)
        crowd = np.zeros((height, width), dtype=bool)
        boxes, labels, masks, keypoints, ann_ids = [], [], [], [], []
        dropped = 0
        for ann in anns:
            label = self._label_of.get(ann["category_id"])
            if label is None:
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            if ann.get("iscrowd", 0):
                crowd |= self._mask(ann, (x, y, w, h), height, width)
                continue
            x0, y0 = max(x, 0.0), max(y, 0.0)
            x1, y1 = min(x + w, float(width)), min(y + h, float(height))
            if x1 <= x0 or y1 <= y0:
                dropped += 1
                continue
            boxes.append((x0, y0, x1, y1))
            labels.append(label)
            masks.append(self._mask(ann, (x, y, w, h), height, width))
            keypoints.append(self._keypoints(ann))
            ann_ids.append(ann["id"])
        targets["crowd"] = torch.from_numpy(crowd)
        if ann_ids:
            targets["boxes"] = torch.tensor(boxes, dtype=torch.float32)
            targets["labels"] = torch.tensor(labels, dtype=torch.int64)
            targets["masks"] = torch.from_numpy(np.stack(masks))
            targets["keypoints"] = torch.from_numpy(np.stack(keypoints))
        return targets, ann_ids, dropped

    def _mask(self, ann: dict, box: tuple[float, ...], height: int, width: int) -> np.ndarray:
        """[H, W] bool mask of the annotation's segmentation, or of its box if it has none."""
        try:
            return decode_segmentation(ann.get("segmentation"), box, height, width)
        except ValueError as error:
            raise AnnotationError(self.ann_file, str(error), ann["id"]) from error

    def _keypoints(self, ann: dict) -> np.ndarray:
        """[17, 3] float32 (x, y, v); zeros for categories without keypoints."""
        values = ann.get("keypoints")
        if ann["category_id"] not in self._keypoint_category_ids or not values:
            return np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
        return np.asarray(values, dtype=np.float32).reshape(NUM_KEYPOINTS, 3)

    # ------------------------------------------------------------------------- reports

    def summary(self) -> dict[str, Any]:
        """Counts from the annotation file alone (no image decoded), selected categories only."""
        per_category = dict.fromkeys(self.category_names, 0)
        keypoints = crowd = empty = 0
        for anns in self._anns_by_image.values():
            objects = 0
            for ann in anns:
                label = self._label_of.get(ann.get("category_id"))
                if label is None:
                    continue
                if ann.get("iscrowd", 0):
                    crowd += 1
                    continue
                objects += 1
                per_category[self.category_names[label]] += 1
                values = ann.get("keypoints")
                if isinstance(values, list):
                    keypoints += sum(1 for v in values[2::3] if is_number(v) and v > 0)
            empty += objects == 0
        return {
            "images": len(self.images),
            "annotations_per_category": per_category,
            "labelled_keypoints": keypoints,
            "crowd_regions": crowd,
            "images_without_annotations": empty,
        }

    def label_counts(self) -> dict[str, int]:
        """Non-crowd objects of the selected categories with a box, with a ``segmentation``, and
        with at least one labelled keypoint: what detection, segmentation and pose can learn from."""
        counts = {"boxes": 0, "segmentations": 0, "keypoint_objects": 0}
        for anns in self._anns_by_image.values():
            for ann in anns:
                if self._label_of.get(ann.get("category_id")) is None or ann.get("iscrowd", 0):
                    continue
                counts["boxes"] += 1
                counts["segmentations"] += bool(ann.get("segmentation"))
                values = ann.get("keypoints")
                counts["keypoint_objects"] += isinstance(values, list) and any(
                    is_number(v) and v > 0 for v in values[2::3])
        return counts

    def validate(self, progress: bool = True) -> dict[str, Any]:
        """``summary()`` plus a walk over every sample (images decoded) listing the bad ones.

        Never raises for a bad sample, even when ``strict``: each is recorded in ``skipped``.
        """
        indices: Iterable[int] = range(len(self))
        if progress:
            indices = tqdm(indices, desc=f"checking {self.ann_file.name}", unit="image")
        for index in indices:
            try:
                self.load(index)
            except DataError as error:
                self.record_skip(index, error)
        report = self.summary()
        report["skipped"] = list(self.skipped)  # (image file, reason)
        report["dropped_boxes"] = self.dropped_boxes
        return report

    def __repr__(self) -> str:
        return (f"CocoDataset({str(self.ann_file)!r}, {len(self)} images, "
                f"categories={self.category_names})")


def collate_samples(batch: Iterable[Sample | None]) -> list[Sample]:
    """The samples of a batch, without the Nones of skipped bad samples."""
    return [sample for sample in batch if sample is not None]
