"""Partial labels: a sample that is not labelled for a task adds nothing to that task's loss
(a missing label is never a negative), and a batch without any adds exactly 0, never NaN."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from deltalearn.data.keypoints import NUM_KEYPOINTS
from deltalearn.data.sample import Sample
from deltalearn.mcn.tasks import DetectionTask, PoseTask, SegmentationTask, Task

from ..samples import DET_BOXES, STRIDE, make_sample

PERSONS = [[16.0, 8.0, 56.0, 88.0], [72.0, 30.0, 104.0, 110.0]]


def persons(tasks: tuple[str, ...] | None = None) -> Sample:
    """Two persons with all 17 keypoints, labelled for ``tasks`` (None: all)."""
    t = torch.linspace(0.1, 0.9, NUM_KEYPOINTS)
    keypoints = torch.stack([torch.stack([torch.full_like(t, (x1 + x2) / 2), y1 + (y2 - y1) * t, torch.full_like(t, 2.0)], 1)
                             for x1, y1, x2, y2 in PERSONS])
    return dataclasses.replace(make_sample(PERSONS, [0, 0], keypoints=keypoints), tasks=tasks)


def tasks_under_test() -> list[tuple[list[Task], str]]:
    """(the tasks to build, the one whose loss is checked): pose reads detection's outputs."""
    det = [DetectionTask(num_classes=1, in_channels=8, box_regression=r) for r in ("center", "region")]
    pose = [PoseTask(in_channels=8, regression=r) for r in ("center", "region")]
    seg = SegmentationTask(num_classes=1, in_channels=8, term_weights={"dice": 1.0})
    return [([d], "det") for d in det] + [([seg], "seg")] + [([DetectionTask(1, in_channels=8), p], "pose") for p in pose]


def encode(tasks: list[Task], samples) -> dict[str, torch.Tensor]:
    return {k: v for task in tasks for k, v in task.encode(samples, STRIDE).items()}


def noisy_outputs(tasks: list[Task], targets: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    outputs = {k: v for task in tasks for k, v in task.oracle_outputs(targets, STRIDE).items()}
    return {k: v.clamp(-20, 20) + torch.randn(v.shape, generator=generator) for k, v in outputs.items()}


@pytest.mark.parametrize("case", range(5))
def test_an_unlabelled_sample_adds_nothing_to_the_task_it_lacks(case: int) -> None:
    tasks, name = tasks_under_test()[case]
    task = tasks[-1]
    labelled, other = persons(), persons(tasks=tuple(t for t in ("det", "seg", "pose") if t != name))
    alone = encode(tasks, [labelled])
    both = encode(tasks, [labelled, other])
    assert both[f"{name}.labelled"].tolist() == [1.0, 0.0]
    outputs = noisy_outputs(tasks, both, seed=case)  # the unlabelled sample's outputs are noise
    first = {k: v[:1] for k, v in outputs.items()}
    expected = task.loss(first, alone)
    found = task.loss(outputs, both)
    assert expected and found.keys() == expected.keys()
    for key in expected:
        assert found[key].item() == pytest.approx(expected[key].item(), rel=1e-5, abs=1e-6), key
    assert all(v.item() > 0 for v in expected.values())  # noise costs something where labelled


@pytest.mark.parametrize("case", range(5))
def test_a_batch_without_labels_for_a_task_adds_exactly_zero(case: int) -> None:
    tasks, name = tasks_under_test()[case]
    task = tasks[-1]
    samples = [persons(tasks=()), persons(tasks=("other",))]
    targets = encode(tasks, samples)
    assert targets[f"{name}.labelled"].sum() == 0
    outputs = {k: v.requires_grad_() for k, v in noisy_outputs(tasks, targets, seed=case).items()}
    losses = task.loss(outputs, targets)
    total = sum(losses.values())
    assert all(torch.isfinite(v) and v.item() == 0.0 for v in losses.values()), losses
    total.backward()
    assert all(v.grad is None or v.grad.abs().max() == 0 for v in outputs.values())


def test_samples_labelled_for_every_task_by_default() -> None:
    sample = make_sample(DET_BOXES, [0, 0, 0])
    assert sample.tasks is None and sample.labelled_for("det") and sample.labelled_for("pose")
    assert not dataclasses.replace(sample, tasks=("seg",)).labelled_for("det")
