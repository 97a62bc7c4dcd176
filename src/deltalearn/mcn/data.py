"""From a COCO dataset to MCN batches: training batches with encoded targets, evaluation
batches that keep what maps predictions back to the original images."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..data.coco import CocoDataset
from ..data.errors import DataError
from ..data.sample import Sample
from ..data.transforms import Letterbox, train_transforms
from .config import DataConfig


@dataclass
class TrainBatch:
    """images [B, 3, S, S] uint8; targets keyed ``<task>.<target>``; bad samples dropped."""

    images: torch.Tensor
    targets: dict[str, torch.Tensor]
    skipped: int = 0


@dataclass
class EvalItem:
    """A letterboxed sample and, for segmentation IoU, its semantic mask at original size."""

    sample: Sample
    semantic: torch.Tensor  # [H0, W0] uint8: 0 background, label + 1, 255 crowd


class TrainCollate:
    """Stack images and encode targets in the loader's worker processes."""

    def __init__(self, encode: Callable[[Sequence[Sample]], dict[str, torch.Tensor]]) -> None:
        self.encode = encode

    def __call__(self, batch: Sequence[Sample | None]) -> TrainBatch | None:
        samples = [sample for sample in batch if sample is not None]
        if not samples:
            return None
        images = torch.stack([sample.image for sample in samples])
        return TrainBatch(images, self.encode(samples), skipped=len(batch) - len(samples))


class EvalDataset(Dataset):
    """``EvalItem`` per image of a CocoDataset; a bad image is skipped (None) and counted."""

    def __init__(self, coco: CocoDataset, image_size: int, label_map: torch.Tensor | None = None) -> None:
        self.coco = coco
        self.letterbox = Letterbox(image_size)
        self.label_map = label_map  # [dataset labels] -> model label of each, when their orders differ

    def __len__(self) -> int:
        return len(self.coco)

    def __getitem__(self, index: int) -> EvalItem | None:
        try:
            sample = self.coco.load(index)
        except DataError as error:
            if self.coco.strict:
                raise
            self.coco.record_skip(index, error)
            return None
        if self.label_map is not None and len(sample.labels):
            sample = dataclasses.replace(sample, labels=self.label_map[sample.labels])
        return EvalItem(self.letterbox(sample), sample.semantic_mask().to(torch.uint8))


def collate_eval(batch: Sequence[EvalItem | None]) -> list[EvalItem]:
    """Keep the good items of a batch as a list (their original sizes differ)."""
    return [item for item in batch if item is not None]


def open_coco(data: Path | None = None, ann: Path | None = None, images: Path | None = None,
              categories: Sequence[str] | None = None, transforms=None,  # noqa: ANN001
              tasks: Sequence[str] | None = None) -> CocoDataset:
    """A CocoDataset from ``--data DIR`` or ``--ann FILE --images DIR``, labelled for ``tasks`` (None: all)."""
    if data is not None and (ann is not None or images is not None):
        raise DataError(data, "give either --data or --ann with --images, not both")
    if data is not None:
        return CocoDataset.from_dir(data, categories=categories or None, transforms=transforms, tasks=tasks)
    if ann is None or images is None:
        raise DataError("<command line>", "no data: give --data DIR, or --ann FILE with --images DIR")
    return CocoDataset(ann, images, categories=categories or None, transforms=transforms, tasks=tasks)


def check_categories(dataset: CocoDataset, info) -> None:  # noqa: ANN001 (ModelInfo)
    """A ValueError naming the annotation file when ``dataset``'s categories are not the model's."""
    if list(dataset.category_ids) != list(info.category_ids):
        raise ValueError(f"{dataset.ann_file}: categories {dataset.category_names} (ids {dataset.category_ids}) do not "
                         f"match the model's {info.category_names} (ids {info.category_ids})")


def training_transforms(config: DataConfig, keypoint_names: Sequence[str] | None = None) -> Callable:
    """The augmentation of ``config`` at ``config.image_size``."""
    return train_transforms(
        config.image_size,
        scale_range=config.scale_range,
        shift=config.shift,
        flip=config.flip,
        color_jitter=config.color_jitter,
        keypoint_names=keypoint_names or None,
        hue_jitter=config.hue_jitter,
    )
