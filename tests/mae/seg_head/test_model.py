"""The segmentation head's model: output shapes, pixels where unpatchify puts them, predictions at any size and layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deltalearn.mae import create_mae
from deltalearn.mae.model import unpatchify
from deltalearn.mae.seg_head import HeadConfig, PatchLogits, build_segmenter, load_seg_head, predict_foreground

from .tiny import VARIANT, fresh_mae

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)


@pytest.mark.parametrize("head", [HeadConfig(hidden=0, center=False, refine=False), HeadConfig(hidden=16, refine_channels=4)])
def test_segmenter_output_shape(head: HeadConfig) -> None:
    model = build_segmenter(create_mae(VARIANT, img_size=(32, 48)), head)
    logits = model(torch.randn(2, 3, 32, 48))["logits"]
    assert logits.shape == (2, 1, 32, 48)


def test_patch_logits_put_pixels_where_unpatchify_does() -> None:
    """With identity norm and projection, the head's pixel shuffle is the MAE's unpatchify."""
    p, grid = 4, (2, 3)
    head = PatchLogits(dim=p * p, patch_size=p, grid_size=grid, hidden=0)
    head.norm = torch.nn.Identity()
    with torch.no_grad():
        head.proj[0].weight.copy_(torch.eye(p * p)[:, :, None, None])
        head.proj[0].bias.zero_()
    tokens = torch.arange(2 * 6 * p * p, dtype=torch.float32).reshape(2, 6, p * p)  # [N, L, p*p], all distinct
    assert torch.equal(head(tokens), unpatchify(tokens, p, grid))


def test_predict_any_size_and_layout(frozen_run: tuple[Path, dict]) -> None:
    model = load_seg_head(frozen_run[0], fresh_mae())
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (40, 90, 3), dtype=np.uint8)  # [H, W, 3] array
    gray = rng.integers(0, 256, (33, 17), dtype=np.uint8)  # [H, W] array
    tensor = torch.from_numpy(wide).permute(2, 0, 1)  # [3, H, W] tensor
    probs = predict_foreground(model, [wide, gray, tensor], batch_size=2)
    assert [p.shape for p in probs] == [(40, 90), (33, 17), (40, 90)]
    assert all(p.dtype == np.float32 and 0 <= p.min() and p.max() <= 1 for p in probs)
    np.testing.assert_allclose(probs[0], probs[2], atol=1e-5)  # batches of 2 and 1: fp32 GEMMs block differently
    with pytest.raises(ValueError, match="uint8 image"):
        predict_foreground(model, [wide.astype(np.float32)])

