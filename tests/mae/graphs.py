"""Small graphs, a tiny MAE and data shared by the patch-graph tests."""

from __future__ import annotations

import numpy as np

from deltalearn.mae.patch_graph import PatchGraph

VARIANT = "mae_vit_cpu_patch8"  # 64 px, 8 x 8 grid of 8 px patches

GRID = 8

FEW_MASKS = 8


def two_cliques(size: int = 5, bridge: float = 0.01) -> PatchGraph:
    """Nodes 0..size-1 and size..2*size-1 fully connected (weight 1), one weak edge between."""
    edges = [(i, j) for block in (range(size), range(size, 2 * size)) for i in block for j in block if i < j]
    weights = [1.0] * len(edges)
    edges.append((size - 1, size))
    weights.append(bridge)
    return PatchGraph(1, 2 * size, np.array(edges), np.array(weights), np.ones(2 * size))


def square_image(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(40, 12, (size, size, 3))
    square = np.zeros((size, size), bool)
    square[20:46, 18:44] = True
    image[square] = rng.normal((220, 200, 120), 6, (square.sum(), 3))
    return np.clip(image, 0, 255).astype(np.uint8), square

