"""Communities of the patch graph, level by level.

Louvain (Blondel et al. 2008) moves nodes between communities while the weighted modularity

    Q = 1/(2m) * sum_ij [w_ij - gamma * k_i k_j / (2m)] * delta(c_i, c_j)

grows (``gamma`` the resolution), then collapses every community into one node of a new,
coarser graph and starts again. igraph's ``community_multilevel(return_levels=True)`` returns
the partition after every pass: level 0 groups patches into small regions, each later level
merges those into larger ones, the last is the complete segmentation. Leiden (Traag et al.
2019) is the option that guarantees connected communities; it yields one partition.

Both use igraph's random number generator (node order); it is seeded for every call, so the
same graph and seed give the same partition.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from collections.abc import Iterator

import igraph
import numpy as np

from .patch_graph import PatchGraph

ALGORITHMS = ("louvain", "leiden")


@contextmanager
def seeded_igraph(seed: int) -> Iterator[None]:
    """igraph draws from ``random.Random(seed)`` inside the block, from Python's ``random`` after."""
    igraph.set_random_number_generator(random.Random(seed))
    try:
        yield
    finally:
        igraph.set_random_number_generator(random)


def community_levels(graph: PatchGraph, algorithm: str = "louvain", resolution: float = 1.0,
                     seed: int = 0) -> list[np.ndarray]:
    """Memberships [L] (ids 0..C-1) from the finest level to the coarsest; Leiden gives one level."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown community algorithm '{algorithm}'; choose one of {', '.join(ALGORITHMS)}")
    g = graph.to_igraph()
    with seeded_igraph(seed):
        if algorithm == "louvain":
            levels = [c.membership for c in g.community_multilevel(weights="weight", return_levels=True,
                                                                    resolution=resolution)]
        else:
            levels = [g.community_leiden(objective_function="modularity", weights="weight",
                                         resolution=resolution, n_iterations=-1).membership]
    if not levels:  # a graph without edges: every patch alone
        levels = [list(range(graph.num_nodes))]
    return [np.asarray(level, dtype=np.int64) for level in levels]


def modularity(graph: PatchGraph, membership: np.ndarray, resolution: float = 1.0) -> float:
    """Weighted modularity of a partition (igraph's definition)."""
    return graph.to_igraph().modularity(membership.tolist(), weights="weight", resolution=resolution)
