"""The foreground rule: the communities whose error departs from the border's."""

from __future__ import annotations

import numpy as np
import pytest

from deltalearn.mae.communities import community_levels
from deltalearn.mae.foreground import foreground_score
from deltalearn.mae.patch_graph import PatchGraph, border_patches, error_weights, grid_edges

from .graphs import GRID

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)


def _block_scene(object_error: float, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Relative errors [64] of an 8x8 grid: a 3x4 block at object_error, background 1; block mask."""
    block = np.zeros((GRID, GRID), bool)
    block[2:5, 3:7] = True
    error = np.where(block, object_error, 1.0)
    if noise:
        error = error * np.exp(np.random.default_rng(0).normal(0, noise, error.shape))
    error = error.ravel()
    return error / error.mean(), block.ravel()


@pytest.mark.parametrize("object_error, noise", [(5.0, 0.0), (0.2, 0.0), (5.0, 0.05), (0.2, 0.05)])
def test_foreground_is_the_block_whose_error_departs(object_error: float, noise: float) -> None:
    """Harder (5x) or easier (0.2x) to predict than the background: both are objects."""
    relative, block = _block_scene(object_error, noise)
    edges = grid_edges(GRID, GRID)
    graph = PatchGraph(GRID, GRID, edges, error_weights(relative, edges, 0.5), relative)
    levels = community_levels(graph, resolution=2.0)
    border = border_patches(GRID, GRID)
    for use in ("vote", "first", "last"):
        score = foreground_score(levels, relative, border, contrast=2.0, use=use)
        assert score.dtype == np.float32
        np.testing.assert_array_equal(score, block.astype(np.float32))


def test_foreground_votes_over_hand_made_levels() -> None:
    relative, block = _block_scene(5.0)
    border = border_patches(GRID, GRID)
    exact = block.astype(np.int64)  # community 1: the block
    right = block & (np.arange(GRID * GRID) % GRID >= 5)
    half = right.astype(np.int64)  # the block's left half lumped with the background
    # the lumped community's mean log error: 6 of 58 patches at log 5, (6/58 log 5) / 0.05 = 3.3 spreads
    score = foreground_score([exact, half], relative, border, contrast=5.0)
    np.testing.assert_array_equal(score, np.where(right, 1.0, np.where(block, 0.5, 0.0)))
    assert (foreground_score([exact, half], relative, border, contrast=5.0, use="first") == block).all()
    assert (foreground_score([exact, half], relative, border, contrast=5.0, use="last") == right).all()
    # at 2 spreads the lumped community (3.3 spreads) would pass the contrast test, but it holds
    # the whole border, so the border-majority guard keeps it background
    np.testing.assert_array_equal(foreground_score([exact, half], relative, border, contrast=2.0),
                                  np.where(right, 1.0, np.where(block, 0.5, 0.0)))
    assert not foreground_score([exact], relative, border, contrast=1e6).any()
    with pytest.raises(ValueError, match="level choice"):
        foreground_score([exact], relative, border, use="middle")

