"""The baselines: center prior, patch-grid ceiling, normalized cut, GrabCut."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deltalearn.mae.baselines import center_prior, grabcut_mask, ncut_split, patch_ceiling
from deltalearn.mae.patch_graph import PatchGraph, to_pixels

from .graphs import GRID, square_image, two_cliques

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def test_center_prior() -> None:
    prior = center_prior(31, 45)
    assert prior.shape == (31, 45) and prior.dtype == np.float32
    assert prior.max() == pytest.approx(1.0) and prior[15, 22] == prior.max()
    assert prior.min() > 0
    row = prior[15]
    assert (np.diff(row[:23]) > 0).all() and (np.diff(row[22:]) < 0).all()
    assert np.allclose(prior, prior[::-1, ::-1])


def test_patch_ceiling() -> None:
    band = np.zeros((64, 64), bool)
    band[16:40] = True  # patch rows 2..4, aligned to the grid
    assert np.array_equal(patch_ceiling(band, GRID, GRID), band)
    left = np.zeros((64, 64), bool)
    left[:, :19] = True  # patch column 2 holds 3 of 8 columns: below half, background
    expected = np.zeros((64, 64), bool)
    expected[:, :16] = True
    assert np.array_equal(patch_ceiling(left, GRID, GRID), expected)
    left[:, 19] = True  # now half of it: foreground
    expected[:, 16:24] = True
    assert np.array_equal(patch_ceiling(left, GRID, GRID), expected)
    assert patch_ceiling(band[:50, :30], 5, 3).shape == (50, 30)


def test_ncut_splits_two_cliques() -> None:
    side = ncut_split(two_cliques())
    assert side.dtype == bool and side.shape == (10,)
    assert side.tolist() in ([True] * 5 + [False] * 5, [False] * 5 + [True] * 5)
    empty = PatchGraph(2, 2, np.zeros((0, 2), np.int64), np.zeros(0), np.ones(4))
    assert not ncut_split(empty).any()


def test_grabcut_finds_a_bright_square() -> None:
    image, square = square_image()
    mask = grabcut_mask(image)
    assert mask.shape == square.shape and mask.dtype == bool
    assert _iou(mask, square) > 0.8
    init = np.where(square, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    init[25:40, 25:40] = cv2.GC_PR_BGD  # a rough start: GrabCut repairs it
    assert _iou(grabcut_mask(image, init), square) > 0.9
    all_fg = np.full(square.shape, cv2.GC_PR_FGD, np.uint8)
    assert grabcut_mask(image, all_fg).all()  # no background sample: the start is returned
    assert not grabcut_mask(image, np.full(square.shape, cv2.GC_PR_BGD, np.uint8)).any()


def test_to_pixels_keeps_patch_centers() -> None:
    scores = np.arange(12, dtype=np.float32) ** 2
    pixels = to_pixels(scores, 3, 4, 33, 44)  # 11 px patches: pixel 5 of each is its center
    assert pixels.shape == (33, 44) and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels[5::11, 5::11], scores.reshape(3, 4), rtol=1e-6)
    assert scores[0] < pixels[5, 10] < scores[1]  # between centers: interpolated

