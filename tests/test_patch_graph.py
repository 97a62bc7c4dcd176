"""MAE patch-graph segmentation: masks, errors, graphs, communities, foreground rule, baselines, scores, CLI.

Hand-built inputs where the answer is known (two cliques, a block of high-error patches, a
bright square), brute-force re-computations of the vectorised parts (influence, F-beta
curve), networkx as an independent modularity, and the two commands end to end on a tiny
random-init MAE.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import networkx as nx
import numpy as np
import pytest
import torch
from PIL import Image

from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.data.errors import DataError, DataWarning
from deltalearn.data.synth import generate_composites
from deltalearn.mae import create_mae, save_mae
from deltalearn.mae.baselines import center_prior, grabcut_mask, ncut_split, patch_ceiling
from deltalearn.mae.communities import community_levels, modularity
from deltalearn.mae.evaluate import THRESHOLDS, FBetaCurve, iou_at_half
from deltalearn.mae.foreground import foreground_score
from deltalearn.mae.patch_graph import (
    AFFINITIES,
    MaskedErrors,
    PatchGraph,
    border_patches,
    build_graphs,
    error_weights,
    grid_edges,
    keep_strongest,
    masked_errors,
    random_masks,
    to_pixels,
)
from deltalearn.mae.segment import PatchGraphConfig, PatchGraphSegmenter

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)

VARIANT = "mae_vit_cpu_patch8"  # 64 px, 8 x 8 grid of 8 px patches
GRID = 8
FEW_MASKS = 8


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_mae(VARIANT).eval()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


def _two_cliques(size: int = 5, bridge: float = 0.01) -> PatchGraph:
    """Nodes 0..size-1 and size..2*size-1 fully connected (weight 1), one weak edge between."""
    edges = [(i, j) for block in (range(size), range(size, 2 * size)) for i in block for j in block if i < j]
    weights = [1.0] * len(edges)
    edges.append((size - 1, size))
    weights.append(bridge)
    return PatchGraph(1, 2 * size, np.array(edges), np.array(weights), np.ones(2 * size))


def _random_grid_graph(rows: int = 6, cols: int = 6, seed: int = 0) -> PatchGraph:
    rng = np.random.default_rng(seed)
    edges = grid_edges(rows, cols)
    return PatchGraph(rows, cols, edges, rng.uniform(0.05, 1.0, len(edges)), np.ones(rows * cols))


# ---- masks and errors ---------------------------------------------------------------------


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


# ---- graph ---------------------------------------------------------------------------------


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


# ---- communities ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["louvain", "leiden"])
def test_communities_split_two_cliques(algorithm: str) -> None:
    levels = community_levels(_two_cliques(), algorithm)
    assert levels and all(level.shape == (10,) and level.dtype == np.int64 for level in levels)
    last = levels[-1]
    assert len(set(last[:5])) == 1 and len(set(last[5:])) == 1 and last[0] != last[5]
    assert sorted(set(last.tolist())) == [0, 1]
    if algorithm == "leiden":
        assert len(levels) == 1


def test_communities_are_seeded_and_modularity_grows_by_level() -> None:
    graph = _random_grid_graph(8, 8, seed=3)
    a, b = community_levels(graph, resolution=2.0, seed=4), community_levels(graph, resolution=2.0, seed=4)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    q = [modularity(graph, level, 2.0) for level in a]
    assert all(later >= earlier - 1e-12 for earlier, later in zip(q, q[1:]))
    with pytest.raises(ValueError, match="algorithm"):
        community_levels(graph, "girvan")


def test_communities_of_a_graph_without_edges() -> None:
    empty = PatchGraph(2, 3, np.zeros((0, 2), np.int64), np.zeros(0), np.ones(6))
    levels = community_levels(empty)
    assert len(np.unique(levels[-1])) == 6


@pytest.mark.parametrize("resolution", [1.0, 2.0])
def test_modularity_agrees_with_networkx(resolution: float) -> None:
    graph = _random_grid_graph(6, 6, seed=1)
    g = nx.Graph()
    g.add_nodes_from(range(graph.num_nodes))
    g.add_weighted_edges_from((int(i), int(j), float(w)) for (i, j), w in zip(graph.edges, graph.weights))
    ours = community_levels(graph, resolution=resolution)[-1]
    groups = [set(np.flatnonzero(ours == c).tolist()) for c in np.unique(ours)]
    q_ours = modularity(graph, ours, resolution)
    q_nx = nx.algorithms.community.modularity(g, groups, weight="weight", resolution=resolution)
    assert q_ours == pytest.approx(q_nx, abs=1e-9)
    theirs = nx.algorithms.community.louvain_communities(g, weight="weight", resolution=resolution, seed=0)
    q_theirs = nx.algorithms.community.modularity(g, theirs, weight="weight", resolution=resolution)
    assert q_ours > 0.1 and abs(q_ours - q_theirs) < 0.02


# ---- foreground rule -----------------------------------------------------------------------


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


# ---- baselines -----------------------------------------------------------------------------


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
    side = ncut_split(_two_cliques())
    assert side.dtype == bool and side.shape == (10,)
    assert side.tolist() in ([True] * 5 + [False] * 5, [False] * 5 + [True] * 5)
    empty = PatchGraph(2, 2, np.zeros((0, 2), np.int64), np.zeros(0), np.ones(4))
    assert not ncut_split(empty).any()


def _square_image(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(40, 12, (size, size, 3))
    square = np.zeros((size, size), bool)
    square[20:46, 18:44] = True
    image[square] = rng.normal((220, 200, 120), 6, (square.sum(), 3))
    return np.clip(image, 0, 255).astype(np.uint8), square


def test_grabcut_finds_a_bright_square() -> None:
    image, square = _square_image()
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


# ---- scores --------------------------------------------------------------------------------


def test_iou_at_half() -> None:
    truth = np.zeros((4, 4), bool)
    truth[:2] = True
    score = np.zeros((4, 4))
    score[:2, :2] = 0.5  # >= 0.5 counts
    score[3, 3] = 0.9
    assert iou_at_half(score, truth) == pytest.approx(4 / 9)
    assert iou_at_half(np.zeros((3, 3)), np.zeros((3, 3), bool)) == 1.0
    assert iou_at_half(np.full((3, 3), 0.49), np.ones((3, 3), bool)) == 0.0
    assert iou_at_half(truth.astype(float), truth) == 1.0


def test_fbeta_of_perfect_and_constant_scores() -> None:
    rng = np.random.default_rng(0)
    truths = [rng.random((20, 30)) < p for p in (0.1, 0.4, 0.7)]
    perfect = FBetaCurve()
    for t in truths:
        perfect.add(t.astype(np.float32), t)
    assert perfect.max_fbeta() == pytest.approx(1.0)
    constant = FBetaCurve()
    constant.add(np.ones((20, 30), np.float32), truths[1])
    assert np.allclose(constant.precision, truths[1].mean()) and np.allclose(constant.recall, 1.0)
    share = truths[1].mean()
    assert constant.max_fbeta() == pytest.approx(1.3 * share / (0.3 * share + 1))
    assert np.isnan(FBetaCurve().max_fbeta())


def test_fbeta_curve_matches_a_loop_over_thresholds() -> None:
    rng = np.random.default_rng(1)
    images = []
    for k in range(5):
        score = rng.integers(0, 257, (12, 17)) / 256.0  # many scores exactly on a threshold
        truth = rng.random((12, 17)) < 0.3 if k != 3 else np.zeros((12, 17), bool)
        if k == 4:
            score = np.minimum(score, 0.2)  # no prediction at high thresholds
        images.append((score.astype(np.float32), truth))
    curve = FBetaCurve()
    precision, recall = np.zeros(len(THRESHOLDS)), np.zeros(len(THRESHOLDS))
    for score, truth in images:
        curve.add(score, truth)
        for n, t in enumerate(THRESHOLDS):
            predicted = score >= t
            tp = (predicted & truth).sum()
            precision[n] += tp / predicted.sum() if predicted.any() else (0.0 if truth.any() else 1.0)
            recall[n] += tp / truth.sum() if truth.any() else 1.0
    np.testing.assert_allclose(curve.precision, precision, atol=1e-9)
    np.testing.assert_allclose(curve.recall, recall, atol=1e-9)
    p, r = precision / len(images), recall / len(images)
    f = np.where(p + r > 0, 1.3 * p * r / np.maximum(0.3 * p + r, 1e-12), 0.0)
    assert curve.max_fbeta() == pytest.approx(f.max(), abs=1e-9)


# ---- segmenter -----------------------------------------------------------------------------


def test_segmenter_returns_masks_at_each_images_size(model: torch.nn.Module) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (48, 40), dtype=np.uint8)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((50, 90), (64, 64), (33, 17))]
    images.append(np.repeat(gray[..., None], 3, axis=2))
    segmenter = PatchGraphSegmenter(model, PatchGraphConfig(num_masks=FEW_MASKS))
    results = segmenter.segment(images)
    assert len(results) == len(images)
    for image, result in zip(images, results):
        assert result.mask.shape == result.score.shape == image.shape[:2]
        assert result.mask.dtype == bool and 0 <= result.score.min() and result.score.max() <= 1
        assert result.patch_score.shape == (GRID * GRID,) and result.levels
        assert np.array_equal(result.mask, result.score >= 0.5)
    again = segmenter.segment(images[:1])[0]
    assert np.array_equal(again.patch_score, results[0].patch_score)  # seeded: masks and communities


def test_segmenter_refines_with_grabcut(model: torch.nn.Module) -> None:
    image, _ = _square_image()
    segmenter = PatchGraphSegmenter(model, PatchGraphConfig(num_masks=FEW_MASKS, refine="grabcut", algorithm="leiden"))
    result = segmenter.segment([image[:50]])[0]
    assert result.mask.shape == (50, 64) and result.mask.dtype == bool


def test_segmenter_rejects_images_smaller_than_a_patch(model: torch.nn.Module) -> None:
    segmenter = PatchGraphSegmenter(model, PatchGraphConfig(num_masks=FEW_MASKS))
    with pytest.raises(DataError, match="40x5 px"):
        segmenter.segment([np.zeros((64, 64, 3), np.uint8), np.zeros((5, 40, 3), np.uint8)])


@pytest.mark.parametrize("override", [{"affinity": "colour"}, {"refine": "crf"}, {"algorithm": "girvan"},
                                      {"levels": "middle"}, {"mask_ratio": 1.0}, {"num_masks": 1}])
def test_patch_graph_config_rejects_bad_values(override: dict) -> None:
    key = next(iter(override))
    with pytest.raises(ValueError, match=key):
        PatchGraphConfig(**override)


# ---- commands ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 composites of 64 px, a corrupt image, and a 40x72 grayscale image whose mask is 64x64."""
    out = tmp_path_factory.mktemp("patch_graph_data")
    generate_composites(out, 6, 64, seed=0, workers=1, progress=False)
    (out / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    gray = np.random.default_rng(0).integers(0, 256, (40, 72), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(out / "images" / "gray.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(out / "masks" / "gray.png")
    return out


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("patch_graph_weights") / "mae.safetensors"
    save_mae(create_mae(VARIANT), path)
    return path


def _one_error_line(capsys: pytest.CaptureFixture, *fragments: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert all(f in errors[0] for f in fragments), errors[0]


def test_segment_command_writes_masks_and_figures(tiny_data: Path, weights: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    with pytest.warns(DataWarning, match="broken.png"):
        assert main(["mae", "segment", "--weights", str(weights), "--source", str(tiny_data / "images"),
                     "--out", str(tmp_path), f"num_masks={FEW_MASKS}"]) == 0
    assert "(1 images skipped)" in capsys.readouterr().out
    stems = [f"{i:06d}" for i in range(6)] + ["gray"]
    assert sorted(p.stem for p in (tmp_path / "masks").glob("*.png")) == stems
    assert sorted(p.stem for p in (tmp_path / "figures").glob("*.png")) == stems
    for stem in stems:
        mask = np.asarray(Image.open(tmp_path / "masks" / f"{stem}.png"))
        assert mask.shape == ((40, 72) if stem == "gray" else (64, 64))
        assert set(np.unique(mask).tolist()) <= {0, 255}
        figure = np.asarray(Image.open(tmp_path / "figures" / f"{stem}.png"))
        assert figure.ndim == 3 and figure.shape[1] > 3 * figure.shape[0]  # image, error, levels, mask


def test_eval_command_scores_method_and_baselines(tiny_data: Path, weights: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "scores.json"
    with pytest.warns(DataWarning, match="broken.png"):
        assert main(["mae", "eval", "--weights", str(weights), "--data", str(tiny_data), "--json", str(out),
                     f"num_masks={FEW_MASKS}"]) == 0
    printed = capsys.readouterr().out
    assert "baseline grabcut" in printed and "patch-grid ceiling 8x8" in printed
    result = json.loads(out.read_text())
    assert result["images"] == 6 and result["skipped"] == 2
    reasons = result["skipped_reasons"]
    assert any(k.endswith("broken.png") for k in reasons)
    gray = next(v for k, v in reasons.items() if k.endswith("gray.png"))
    assert "64x64" in gray and "72x40" in gray
    assert set(result["baselines"]) == {"center_prior", "grabcut", "ncut", "ncut+grabcut"}
    assert set(result["variants"]) == {"graph", "graph+grabcut"}  # no head given
    scored = [result, result["patch_ceiling"], *result["baselines"].values()]
    for scores in scored:
        assert 0.0 <= scores["iou"] <= 1.0 and 0.0 <= scores["max_fbeta"] <= 1.0
    truths = [np.asarray(Image.open(tiny_data / "masks" / f"{i:06d}.png")) > 127 for i in range(6)]
    ceiling = np.mean([iou_at_half(patch_ceiling(t, GRID, GRID).astype(np.float32), t) for t in truths])
    assert result["patch_ceiling"]["iou"] == pytest.approx(ceiling, abs=1e-4)  # small objects: well below 1
    assert result["config"]["num_masks"] == FEW_MASKS and result["grid"] == [GRID, GRID]


def test_commands_reject_a_misspelt_setting(tiny_data: Path, weights: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    segment = ["mae", "segment", "--weights", str(weights), "--source", str(tiny_data / "images"),
               "--out", str(tmp_path / "out")]
    assert main([*segment, "resolutoin=1"]) == EXIT_BAD_INPUT
    _one_error_line(capsys, "resolutoin", "resolution")
    assert main([*segment, "affinity=colour"]) == EXIT_BAD_INPUT
    _one_error_line(capsys, "affinity", "colour")
    assert main(["mae", "eval", "--weights", str(weights), "--data", str(tmp_path / "missing")]) == EXIT_BAD_INPUT
    _one_error_line(capsys, "missing", "not found")
    assert not (tmp_path / "out").exists()
