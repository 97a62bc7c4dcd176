"""The patch graph: random masks, masked reconstruction errors, relative error and influence, grid edges and their weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deltalearn.mae.patch_graph import (
    AFFINITIES,
    MaskedErrors,
    border_patches,
    build_graphs,
    error_weights,
    grid_edges,
    keep_strongest,
    masked_errors,
    balanced_masks,
    random_masks,
)

from .graphs import FEW_MASKS, GRID

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)


def _influence_by_loops(errors: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """I[i, j] of one image [K, L], straight from the definition."""
    k, length = hidden.shape
    out = np.zeros((length, length))
    e = np.array([errors[hidden[:, j], j].mean() for j in range(length)])
    for i in range(length):
        for j in range(length):
            both = hidden[:, j] & hidden[:, i]
            only_j = hidden[:, j] & ~hidden[:, i]
            if both.any() and only_j.any():
                out[i, j] = (errors[both, j].mean() - errors[only_j, j].mean()) / e[j]
    return out


def test_balanced_masks_show_every_patch_once_per_round() -> None:
    generator = torch.Generator().manual_seed(0)
    masks = balanced_masks(16, 196, 0.75, generator)  # ViT-B/16 at 224 px: 4 masks per round of 49 seen
    assert masks.shape == (16, 196) and (masks.sum(1) == 147).all()
    for start in range(0, 16, 4):
        assert ((~masks[start:start + 4]).sum(0) == 1).all()  # each patch seen once in every round
    assert not torch.equal(masks[:4], masks[4:8])  # rounds are new permutations
    odd = balanced_masks(7, 10, 0.7, torch.Generator().manual_seed(1))  # 3 seen: 4 sets per round, the last padded
    assert (odd.sum(1) == 7).all() and ((~odd[:4]).sum(0) >= 1).all()
    random = random_masks(16, 196, 0.75, torch.Generator().manual_seed(0))
    assert (~random).sum(0).min() < (~masks).sum(0).min() == 4  # random masks leave some patch seen less
    with pytest.raises(ValueError, match="hides"):
        balanced_masks(4, 10, 1.0, generator)


def test_random_masks_hide_exactly_the_ratio_and_follow_the_seed() -> None:
    masks = random_masks(50, 64, 0.75, torch.Generator().manual_seed(3))
    assert masks.shape == (50, 64) and masks.dtype == torch.bool
    assert (masks.sum(1) == 48).all()
    assert len({tuple(m.tolist()) for m in masks}) == 50  # rows differ
    again = random_masks(50, 64, 0.75, torch.Generator().manual_seed(3))
    other = random_masks(50, 64, 0.75, torch.Generator().manual_seed(4))
    assert torch.equal(masks, again) and not torch.equal(masks, other)
    assert (random_masks(4, 10, 0.33, torch.Generator().manual_seed(0)).sum(1) == 3).all()  # round(3.3)


@pytest.mark.parametrize("ratio", [0.0, 1.0, 0.01, 0.99, -0.5])
def test_random_masks_need_one_hidden_and_one_seen(ratio: float) -> None:
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masks(2, 20, ratio, torch.Generator().manual_seed(0))


def test_masked_errors_shapes_and_batch_independence(model: torch.nn.Module) -> None:
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    # batches of 7 copies split images across chunks
    small = masked_errors(model, images, num_masks=FEW_MASKS, seed=5, batch_size=7, precision="fp32")
    large = masked_errors(model, images, num_masks=FEW_MASKS, seed=5, batch_size=512, precision="fp32")
    assert small.errors.shape == small.hidden.shape == (3, FEW_MASKS, GRID * GRID)
    assert small.errors.dtype == torch.float32 and small.hidden.dtype == torch.bool
    assert torch.equal(small.hidden, large.hidden)
    assert torch.allclose(small.errors, large.errors, rtol=1e-4, atol=1e-5)
    # the default (bf16 where the CPU has it) agrees within bf16 rounding, whatever the batching
    rounded = masked_errors(model, images, num_masks=FEW_MASKS, seed=5, batch_size=7)
    assert torch.allclose(rounded.errors, large.errors, rtol=2e-2, atol=1e-3)
    assert (small.hidden.sum(2) == 48).all()
    assert torch.equal(small.hidden[0], small.hidden[2])  # every image gets the same masks
    # different images give different errors, a different seed different masks
    assert not torch.allclose(small.errors[0], small.errors[1])
    assert not torch.equal(masked_errors(model, images[:1], num_masks=FEW_MASKS, seed=6).hidden[0], small.hidden[0])


def test_relative_error_has_mean_one_and_ignores_seen_patches() -> None:
    rng = torch.Generator().manual_seed(0)
    hidden = torch.stack([random_masks(12, 16, 0.5, rng) for _ in range(3)])  # [3, 12, 16]
    errors = torch.rand(3, 12, 16, generator=rng) + 0.1
    r = MaskedErrors(errors, hidden).relative()
    assert r.shape == (3, 16)
    assert torch.allclose(r.mean(1), torch.ones(3), atol=1e-6)
    junk = torch.where(hidden, errors, torch.full_like(errors, 1e3))  # seen errors must not count
    assert torch.allclose(MaskedErrors(junk, hidden).relative(), r)
    h = hidden[1].float()
    e = (errors[1] * h).sum(0) / h.sum(0)
    assert torch.allclose(r[1], e / e.mean(), atol=1e-6)


def test_influence_finds_the_patch_that_helps() -> None:
    """Patch 3's error is 4 when patch 1 is hidden and 1 when it is seen; every other error is flat."""
    num_masks, length, helper, target = 400, 6, 1, 3
    hidden = random_masks(num_masks, length, 0.5, torch.Generator().manual_seed(0))
    errors = torch.ones(num_masks, length)
    errors[:, target] = torch.where(hidden[:, helper], 4.0, 1.0)
    errors = torch.where(hidden, errors, torch.full_like(errors, 50.0))  # seen: junk, must not count
    influence = MaskedErrors(errors[None], hidden[None]).influence()[0]
    assert influence.shape == (length, length)
    # E(target | both hidden) = 4, E(target | helper seen) = 1, relative to e(target)
    e_target = errors[hidden[:, target], target].mean()
    assert influence[helper, target] == pytest.approx(3.0 / e_target.item(), rel=1e-5)
    assert influence[helper, target] > 1.0
    flat = [j for j in range(length) if j != target]
    assert influence[:, flat].abs().max() < 1e-6  # flat errors: nobody helps them
    assert influence.diagonal().abs().max() == 0  # i == j: never seen while hidden
    assert influence[target, helper].abs() < 1e-6  # not symmetric: the helper is not helped
    others = [i for i in range(length) if i not in (helper, target)]
    assert influence[others, target].abs().max() < 0.5 * influence[helper, target]
    np.testing.assert_allclose(influence.numpy(), _influence_by_loops(errors.numpy(), hidden.numpy()), atol=1e-5)


def test_influence_matches_the_definition_on_random_errors() -> None:
    rng = torch.Generator().manual_seed(1)
    hidden = torch.stack([random_masks(30, 9, 0.6, rng) for _ in range(2)])
    errors = torch.rand(2, 30, 9, generator=rng)
    influence = MaskedErrors(errors, hidden).influence()
    for n in range(2):
        np.testing.assert_allclose(influence[n].numpy(), _influence_by_loops(errors[n].numpy(), hidden[n].numpy()),
                                   atol=1e-5)


def test_grid_edges_of_a_3x4_grid() -> None:
    edges = grid_edges(3, 4, radius=1)
    assert edges.shape == (9 + 8 + 12, 2)  # horizontal 3*3, vertical 2*4, diagonal 2*2*3
    assert (edges[:, 0] < edges[:, 1]).all()
    assert len({tuple(e) for e in edges.tolist()}) == len(edges)
    r, c = np.divmod(edges, 4)
    assert (np.maximum(abs(r[:, 0] - r[:, 1]), abs(c[:, 0] - c[:, 1])) == 1).all()
    assert {tuple(e) for e in edges.tolist()} >= {(0, 1), (0, 4), (0, 5), (1, 4), (10, 11), (7, 11)}
    assert len(grid_edges(1, 1)) == 0


@pytest.mark.parametrize("rows, cols, radius", [(3, 4, 2), (5, 2, 1), (4, 6, 3)])
def test_grid_edges_match_all_pairs_within_chebyshev_radius(rows: int, cols: int, radius: int) -> None:
    expected = {(i, j) for i in range(rows * cols) for j in range(i + 1, rows * cols)
                if max(abs(i // cols - j // cols), abs(i % cols - j % cols)) <= radius}
    edges = grid_edges(rows, cols, radius)
    assert len(edges) == len(expected) and {tuple(e) for e in edges.tolist()} == expected


def test_border_patches() -> None:
    border = border_patches(3, 4)
    assert border.tolist() == [True] * 5 + [False, False] + [True] * 5  # interior: 5 and 6
    assert border_patches(8, 8).sum() == 28


def test_error_weights() -> None:
    edges = np.array([[0, 1], [1, 2], [1, 3]])
    assert np.allclose(error_weights(np.full(4, 0.7), edges, 0.5), 1.0)  # equal errors: weight 1
    relative = np.array([1.0, 1.0, 2.0, 4.0])
    w = error_weights(relative, edges, sigma_scale=0.5)
    assert w[0] == pytest.approx(1.0) and 1.0 > w[1] > w[2] > 0
    sigma = 0.5 * np.mean([0.0, np.log(2), np.log(4)])
    assert w[2] == pytest.approx(np.exp(-np.log(4) / sigma))
    assert error_weights(relative, edges, sigma_scale=2.0)[2] > w[2]  # wider sigma, milder weights


def test_keep_strongest_keeps_each_nodes_best_edge() -> None:
    edges = np.array([[0, 1], [1, 2], [2, 3], [0, 3]])
    weights = np.array([0.9, 0.1, 0.8, 0.2])
    assert keep_strongest(edges, weights, 4, knn=1).tolist() == [True, False, True, False]
    assert keep_strongest(edges, weights, 4, knn=0).all()


@pytest.mark.parametrize("affinity", AFFINITIES)
def test_build_graphs_gives_one_positive_graph_per_image(model: torch.nn.Module, affinity: str) -> None:
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    graphs = build_graphs(model, images, affinity, num_masks=FEW_MASKS)
    assert len(graphs) == 2
    grid = {tuple(e) for e in grid_edges(GRID, GRID).tolist()}
    for g in graphs:
        assert (g.rows, g.cols) == (GRID, GRID) and g.relative_error.shape == (GRID * GRID,)
        assert len(g.edges) == len(g.weights) and {tuple(e) for e in g.edges.tolist()} <= grid
        assert np.isfinite(g.weights).all() and (g.weights > 0).all()
        if affinity != "influence":  # the only affinity that drops (non-positive) edges
            assert len(g.edges) == len(grid)
    assert not np.allclose(graphs[0].relative_error, graphs[1].relative_error)
    with pytest.raises(ValueError, match="affinity"):
        build_graphs(model, images, "colour", num_masks=FEW_MASKS)

