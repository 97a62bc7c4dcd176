"""Fixed 2-D sine-cosine position embeddings of the MAE paper (not learned).

Layout, as in the official MAE code and so in its checkpoints: for the patch in grid
row ``i`` and column ``j`` the first half of the vector encodes the column ``j``, the
second half the row ``i``; each half is ``[sin(pos * omega) | cos(pos * omega)]`` with
``omega_k = 1 / 10000 ** (k / (dim / 4))``. Patches are numbered row by row, like the
tokens that ``PatchEmbed`` produces. An optional all-zero first row is the class token's slot.
"""

from __future__ import annotations

import torch
from torch import Tensor

SINCOS_TEMPERATURE = 10000.0  # base of the frequency decay, as in "Attention is all you need"


def sincos_1d(dim: int, positions: Tensor) -> Tensor:
    """Sine-cosine code of 1-D positions: positions [M] -> [M, dim], ``[sin | cos]``."""
    if dim % 2:
        raise ValueError(f"sine-cosine embedding needs an even width, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2)
    omega = 1.0 / SINCOS_TEMPERATURE**omega  # [dim/2]
    angles = positions.to(torch.float64)[:, None] * omega[None, :]  # [M, dim/2]
    return torch.cat([angles.sin(), angles.cos()], dim=1)  # [M, dim]


def sincos_2d(dim: int, grid_size: tuple[int, int], cls_token: bool = True) -> Tensor:
    """Position embeddings of a (rows, cols) patch grid: [(1 +) rows*cols, dim], float32."""
    if dim % 4:
        raise ValueError(f"2-D sine-cosine embedding needs a width divisible by 4, got {dim}")
    rows, cols = grid_size
    row = torch.arange(rows, dtype=torch.float64).repeat_interleave(cols)  # [L], i of each patch
    col = torch.arange(cols, dtype=torch.float64).repeat(rows)  # [L], j of each patch
    emb = torch.cat([sincos_1d(dim // 2, col), sincos_1d(dim // 2, row)], dim=1)  # [L, dim]
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim, dtype=emb.dtype, device=emb.device), emb], dim=0)
    return emb.float()  # [1 + L, dim] with cls slot
