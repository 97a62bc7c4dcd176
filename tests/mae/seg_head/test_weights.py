"""Head files: round trip, a frozen encoder left unchanged and checked against its fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deltalearn.engine.checkpoint import CheckpointError, read_weights, weights_metadata
from deltalearn.mae import create_mae
from deltalearn.mae.seg_head import HEAD_FILE, encoder_state, load_seg_head, predict_foreground

from .tiny import VARIANT, fresh_mae, load_folder

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)


def test_round_trip_and_frozen_encoder_unchanged(frozen_run: tuple[Path, dict], composites: Path) -> None:
    run, _ = frozen_run
    file = run / HEAD_FILE
    assert weights_metadata(file)["encoder"] == "frozen"
    assert not any(k.startswith("mae.") for k in read_weights(file))  # the frozen encoder is not stored
    mae = fresh_mae()
    before = {k: v.clone() for k, v in encoder_state(mae).items()}
    first = load_seg_head(file, mae)  # the fingerprint check: the trained copy's encoder never changed
    images, _ = load_folder(composites)
    again = load_seg_head(run, fresh_mae())
    for a, b in zip(predict_foreground(first, images), predict_foreground(again, images)):
        np.testing.assert_array_equal(a, b)
    assert all(torch.equal(before[k], v) for k, v in encoder_state(mae).items())


def test_frozen_head_needs_its_own_mae(frozen_run: tuple[Path, dict]) -> None:
    run, _ = frozen_run
    with pytest.raises(CheckpointError, match="frozen MAE encoder.*random"):
        load_seg_head(run)
    torch.manual_seed(1)
    with pytest.raises(CheckpointError, match="encoder weights differ"):
        load_seg_head(run, create_mae(VARIANT))
    with pytest.raises(CheckpointError, match="another MAE architecture"):
        load_seg_head(run, create_mae(VARIANT, img_size=32))

