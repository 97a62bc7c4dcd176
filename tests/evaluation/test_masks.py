"""Confusion-matrix IoU of label maps."""

from __future__ import annotations

import math

import pytest
import torch

from deltalearn.data.sample import IGNORE_INDEX
from deltalearn.evaluation import ConfusionMatrix, segmentation_metrics


def test_confusion_matrix_iou() -> None:
    target = torch.tensor([[0, 0, 1, 1], [0, 2, 2, IGNORE_INDEX]])
    prediction = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 1]])
    matrix = ConfusionMatrix(num_classes=4)
    matrix.update(prediction, target)
    iou = matrix.iou()
    assert iou[:3].tolist() == pytest.approx([2 / 4, 2 / 3, 1 / 2]) and math.isnan(iou[3])
    metrics = segmentation_metrics(matrix, person_label=0)
    assert metrics["seg_iou"] == pytest.approx(2 / 3)
    assert metrics["seg_miou"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)

