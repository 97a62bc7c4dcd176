"""Losses: zero or minimal on perfect predictions, growing with the error."""

from __future__ import annotations

import pytest
import torch

from deltalearn.data.sample import IGNORE_INDEX
from deltalearn.mcn.heatmaps import draw_gaussian
from deltalearn.mcn.losses import dice_loss, focal_loss, masked_l1, segmentation_ce

from .samples import CONFIDENT


def test_focal_loss_minimal_for_perfect_and_grows_with_error() -> None:
    target = torch.zeros(1, 2, 16, 16)
    draw_gaussian(target[0, 0], (4, 4), 2)
    draw_gaussian(target[0, 1], (10, 12), 3)
    perfect = torch.where(target.eq(1), CONFIDENT, -CONFIDENT)
    losses = [focal_loss(perfect + error * torch.where(target.eq(1), -1.0, 1.0), target).item()
              for error in (0.0, 20.0, 28.0, 31.0, 35.0)]
    assert losses[0] < 1e-6
    assert all(a < b for a, b in zip(losses, losses[1:]))
    false_positive = perfect.clone()
    false_positive[0, 0, 12, 2] = CONFIDENT
    weight = torch.ones(1, 1, 16, 16)
    weight[..., 12, 2] = 0.0  # a crowd cell
    assert focal_loss(false_positive, target).item() > 1.0
    assert focal_loss(false_positive, target, weight).item() < 1e-6


def test_masked_l1_and_segmentation_losses() -> None:
    target = torch.randn(2, 5, 2)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float32)
    assert masked_l1(target, target, mask) == 0.0
    noisy = target.clone()
    noisy[0, 3] += 100.0  # masked out
    assert masked_l1(noisy, target, mask) == 0.0
    assert masked_l1(target + 0.5, target, mask) == pytest.approx(0.5)
    assert masked_l1(target + 1.0, target, mask) == pytest.approx(1.0)

    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, 0, 0] = IGNORE_INDEX
    logits = torch.nn.functional.one_hot(labels.clamp(max=2), 3).permute(0, 3, 1, 2).float() * CONFIDENT
    wrong = logits.roll(1, dims=1)
    assert segmentation_ce(logits, labels) < 1e-6
    assert segmentation_ce(logits * 0.1, labels) < segmentation_ce(wrong, labels)
    assert dice_loss(logits, labels) < 1e-3 < dice_loss(wrong, labels)

