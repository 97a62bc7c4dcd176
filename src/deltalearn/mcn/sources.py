"""Training data from several COCO sources, each labelled for some of the tasks.

Every source is a COCO dataset with the tasks its annotations label and a sampling weight
(``data.sources`` of the config). Categories are matched by name: the first source (or
``data.categories``) names them, and every other source must have each of them. A sample
carries its source's tasks, so that the tasks it is not labelled for learn nothing from it.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..config import ConfigError
from ..data.coco import CocoDataset
from ..data.sample import Sample
from .config import MCNConfig, SourceConfig
from .data import EvalDataset, open_coco

# what each task learns from, as CocoDataset.label_counts names it
TASK_LABELS = {"det": ("boxes", "boxes"), "seg": ("segmentations", "instance segmentations"),
               "pose": ("keypoint_objects", "objects with labelled keypoints")}


class SourceMix(Dataset):
    """The samples of several CocoDatasets as one dataset: labels mapped onto the first source's
    categories by name, each sample tagged with its source's tasks, and ``sample_weights`` (one
    per sample: its source's weight) for :class:`deltalearn.engine.distributed.WeightedEpochSampler`."""

    def __init__(self, sources: Sequence[CocoDataset], configs: Sequence[SourceConfig]) -> None:
        self.sources, self.configs = list(sources), list(configs)
        first = self.sources[0]
        self.category_ids: list[int] = list(first.category_ids)
        self.category_names: list[str] = list(first.category_names)
        self.label_maps = [torch.tensor([self.category_names.index(n) for n in s.category_names], dtype=torch.int64)
                           for s in self.sources]
        self.starts = [0]
        for source in self.sources:
            self.starts.append(self.starts[-1] + len(source))
        self.sample_weights = [c.weight for s, c in zip(self.sources, self.configs) for _ in range(len(s))]
        keypoint_names = {name for s in self.sources for name, cat in zip(s.category_names, s.category_ids)
                          if cat in s.keypoint_category_ids}
        self.keypoint_category_ids = frozenset(c for n, c in zip(self.category_names, self.category_ids)
                                               if n in keypoint_names)
        with_keypoints = [s for s in self.sources if s.keypoint_names]
        self.keypoint_names = with_keypoints[0].keypoint_names if with_keypoints else ()
        self.skeleton = with_keypoints[0].skeleton if with_keypoints else ()
        self.ann_file = first.ann_file

    @property
    def labelled_tasks(self) -> set[str] | None:
        """The tasks some source labels; None when a source labels every task."""
        if any(source.tasks is None for source in self.sources):
            return None
        return {task for source in self.sources for task in source.tasks}

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [entry for source in self.sources for entry in source.skipped]

    @property
    def transforms(self) -> Callable[[Sample], Sample] | None:
        return self.sources[0].transforms

    @transforms.setter
    def transforms(self, transforms: Callable[[Sample], Sample] | None) -> None:
        for source in self.sources:
            source.transforms = transforms

    @property
    def cache_samples(self) -> bool:
        return self.sources[0].cache_samples

    @cache_samples.setter
    def cache_samples(self, cache: bool) -> None:
        for source in self.sources:
            source.cache_samples = cache

    def __len__(self) -> int:
        return self.starts[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """(source, index in that source) of sample ``index``."""
        source = bisect.bisect_right(self.starts, index) - 1
        return source, index - self.starts[source]

    def __getitem__(self, index: int) -> Sample | None:
        source, inner = self.locate(index)
        sample = self.sources[source][inner]
        if sample is None or not len(sample.labels):
            return sample
        return dataclasses.replace(sample, labels=self.label_maps[source][sample.labels])


def open_source(source: SourceConfig, categories: Sequence[str] | None, tasks: Sequence[str]) -> CocoDataset:
    """The CocoDataset of ``source``, labelled for its tasks among ``tasks`` (all of them if it names none)."""
    labelled = [task for task in (source.tasks or tasks) if task in tasks]
    return open_coco(Path(source.data) if source.data else None, Path(source.ann) if source.ann else None,
                     Path(source.images) if source.images else None, categories, tasks=labelled)


def check_labels(dataset: CocoDataset, source: SourceConfig) -> None:
    """ConfigError when ``source`` declares a task its annotations cannot label."""
    counts = dataset.label_counts()
    for task in dataset.tasks or ():
        key, what = TASK_LABELS[task]
        if counts[key] == 0:
            raise ConfigError(f"data.sources ({source.label}): declares task {task!r} but {dataset.ann_file} has "
                              f"no {what} of the categories {dataset.category_names}")


def open_sources(config: MCNConfig) -> SourceMix:
    """The training sources of ``config.data.sources`` as one SourceMix; every enabled task must
    be labelled by at least one source, unless ``loss.distill`` lets the --init network teach
    it (:func:`deltalearn.mcn.train.train` checks that it can)."""
    tasks = list(config.model.tasks)
    categories: list[str] | None = list(config.data.categories) or None
    opened = []
    for source in config.data.sources:
        dataset = open_source(source, categories, tasks)
        check_labels(dataset, source)
        categories = categories or list(dataset.category_names)
        opened.append(dataset)
    mix = SourceMix(opened, config.data.sources)
    unlabelled = [t for t in tasks if t not in (mix.labelled_tasks or tasks)]
    if unlabelled and config.loss.distill <= 0:
        raise ConfigError(f"model.tasks {tasks}: no source of data.sources labels {unlabelled}")
    return mix


def coverage(mix: SourceMix) -> str:
    """One line per source: its images, weight, labelled tasks and what they learn from."""
    lines = []
    for dataset, source in zip(mix.sources, mix.configs):
        counts = dataset.label_counts()
        labelled = ", ".join(f"{task} ({counts[TASK_LABELS[task][0]]} {TASK_LABELS[task][1]})"
                             for task in dataset.tasks or ())
        lines.append(f"source {source.label}: {len(dataset)} images, weight {source.weight:g}, labels {labelled}")
    return "\n".join(lines)


def evaluation_sets(config: MCNConfig, category_names: Sequence[str],
                    image_size: int) -> list[tuple[SourceConfig, CocoDataset, EvalDataset, list[int]]]:
    """Per source of ``config.data.sources``: its dataset (labelled for its tasks), the
    EvalDataset that maps its labels onto the model's ``category_names``, and the source's COCO
    id of each model label. Every source must have all of the model's categories."""
    sets = []
    for source in config.data.sources:
        dataset = open_source(source, category_names, list(config.model.tasks))
        label_map = torch.tensor([list(category_names).index(n) for n in dataset.category_names], dtype=torch.int64)
        ids = [dataset.category_ids[dataset.category_names.index(n)] for n in category_names]
        sets.append((source, dataset, EvalDataset(dataset, image_size, label_map), ids))
    return sets
