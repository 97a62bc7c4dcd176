"""Louvain and Leiden communities level by level, and their modularity (cross-checked with networkx)."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from deltalearn.mae.communities import community_levels, modularity
from deltalearn.mae.patch_graph import PatchGraph, grid_edges

from .graphs import two_cliques

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)


def _random_grid_graph(rows: int = 6, cols: int = 6, seed: int = 0) -> PatchGraph:
    rng = np.random.default_rng(seed)
    edges = grid_edges(rows, cols)
    return PatchGraph(rows, cols, edges, rng.uniform(0.05, 1.0, len(edges)), np.ones(rows * cols))


@pytest.mark.parametrize("algorithm", ["louvain", "leiden"])
def test_communities_split_two_cliques(algorithm: str) -> None:
    levels = community_levels(two_cliques(), algorithm)
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

