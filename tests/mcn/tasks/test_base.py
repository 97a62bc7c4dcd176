"""What every task shares: weighted loss terms, unknown terms refused."""

from __future__ import annotations

import pytest

from deltalearn.mcn.tasks import DetectionTask

from ..samples import DET_BOXES, STRIDE, make_sample


def test_loss_weights() -> None:
    det = DetectionTask(num_classes=1, in_channels=8, term_weights={"size": 0.0}, weight=2.0)
    targets = det.encode([make_sample(DET_BOXES[:1], [0])], STRIDE)
    outputs = {k: v + 0.3 for k, v in det.oracle_outputs(targets, STRIDE).items()}
    losses = det.loss(outputs, targets)
    assert "det.size" not in losses
    assert losses["det.offset"].item() == pytest.approx(2.0 * 0.3, rel=1e-4)
    with pytest.raises(ValueError, match="unknown loss terms"):
        DetectionTask(num_classes=1, in_channels=8, term_weights={"sizes": 1.0})

