"""The patch graph: how much the patches of one image relate, read from MAE reconstruction errors.

Nodes are the ``L = rows * cols`` patches of the MAE's input grid. Every image goes through
the MAE under ``K`` random masks at once (one batched forward pass of ``K`` copies, so a
graph costs ``ceil(K / batch)`` passes, never one pass per pair). For mask ``k`` let
``h_k(i) = 1`` when patch ``i`` is hidden and ``E_k(i)`` its reconstruction error (mean
squared error over the patch's pixels, in the model's target units). From these:

- relative reconstruction error of patch ``i`` (the work's definition of the node quantity)::

      e(i) = sum_k h_k(i) E_k(i) / sum_k h_k(i),        r(i) = e(i) / mean_j e(j)

- error affinity (``affinity: error``, the work's edges: relative errors as weights) between
  neighbouring patches ``i ~ j`` of the grid (``radius`` 1: 8 neighbours)::

      w(i, j) = exp(-|log r(i) - log r(j)| / sigma),    sigma = sigma_scale * mean_{i~j} |log r(i) - log r(j)|

  Patches that the MAE finds equally hard to predict are alike; an edge between object and
  background, whose errors differ, is weak. (High error means hard-to-predict texture, not
  object: the rule that picks the foreground must not assume that objects have high error.)

- influence (``affinity: influence``): how much seeing patch ``i`` lowers the error of patch
  ``j``, relative to ``j``'s error, from the same masks::

      I(i -> j) = [E(j | j hidden, i hidden) - E(j | j hidden, i seen)] / e(j)
      w(i, j)   = max(0, (I(i -> j) + I(j -> i)) / 2)   for i ~ j

  Each conditional mean is a matrix product over the masks (``H^T E`` and ``(1-H)^T E``).

- feature affinity (``affinity: features``): cosine similarity of the encoder's tokens of
  the whole image (no patch hidden), ``w(i, j) = exp((cos(i, j) - 1) / tau)`` for ``i ~ j``.

- ``affinity: error+features``: the geometric mean ``sqrt(w_error * w_features)`` of both, a
  lever that combines what the reconstruction errors and what the encoder's features say.

The graph is undirected, one edge per neighbouring pair; optionally sparsified to each
node's ``knn`` strongest edges (``knn`` 0 keeps all).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import igraph
import numpy as np
import torch
from torch import Tensor

from ..engine.precision import autocast, resolve_precision
from .model import MaskedAutoencoder

AFFINITIES = ("error", "influence", "features", "error+features")
EPS = 1e-8


@dataclass
class MaskedErrors:
    """The MAE's reconstruction errors of one batch of images under ``K`` masks each."""

    errors: Tensor  # [N, K, L] float32, error of every patch (meaningful where hidden)
    hidden: Tensor  # [N, K, L] bool, True: the patch was removed from the encoder's input

    def relative(self) -> Tensor:
        """r [N, L]: each patch's mean error when hidden over the image's mean.

        A patch that no mask hid has no error of its own; it gets r = 1 (the image's mean),
        which no foreground rule reads as contrast.
        """
        h = self.hidden.float()
        count = h.sum(1)  # [N, L]
        e = (self.errors * h).sum(1) / count.clamp_min(1.0)
        measured = count > 0
        mean = (e * measured).sum(1, keepdim=True) / measured.sum(1, keepdim=True).clamp_min(1)
        return torch.where(measured, e / mean.clamp_min(EPS), torch.ones_like(e))

    def influence(self) -> Tensor:
        """I [N, L, L]: ``I[n, i, j]`` how much seeing i lowers j's error, relative to j's error."""
        h = self.hidden.float()  # [N, K, L]
        seen = 1.0 - h
        eh = self.errors * h  # errors where hidden
        hidden_sum = h.transpose(1, 2) @ eh  # [N, L, L]: i hidden, j hidden, sum of E_j
        hidden_n = h.transpose(1, 2) @ h
        seen_sum = seen.transpose(1, 2) @ eh  # i seen, j hidden
        seen_n = seen.transpose(1, 2) @ h
        lowered = hidden_sum / hidden_n.clamp_min(1.0) - seen_sum / seen_n.clamp_min(1.0)
        valid = (hidden_n > 0) & (seen_n > 0)
        e = (eh.sum(1) / h.sum(1).clamp_min(1.0)).clamp_min(EPS)  # [N, L]
        return torch.where(valid, lowered / e[:, None, :], torch.zeros_like(lowered))


def random_masks(num: int, length: int, mask_ratio: float, generator: torch.Generator) -> Tensor:
    """[num, length] bool masks (True: hidden) with exactly ``round(length * mask_ratio)`` hidden."""
    hide = int(round(length * mask_ratio))
    if not 0 < hide < length:
        raise ValueError(f"mask_ratio {mask_ratio} hides {hide} of {length} patches; need at least one hidden and one seen")
    order = torch.rand(num, length, generator=generator).argsort(1)
    return order < hide  # a random permutation's first ``hide`` ranks


def balanced_masks(num: int, length: int, mask_ratio: float, generator: torch.Generator) -> Tensor:
    """[num, length] bool masks (True: hidden), each hiding ``round(length * mask_ratio)``, that
    show every patch equally often: each round is a random permutation cut into the visible
    sets of ``ceil(length / visible)`` masks (the last topped up with patches of the round's
    start), so after whole rounds every patch was seen once per round, and hidden in the rest.
    Random masks reach that balance only on average: with 16 masks at ratio 0.75 some patch is
    usually never seen, or never hidden."""
    hide = int(round(length * mask_ratio))
    if not 0 < hide < length:
        raise ValueError(f"mask_ratio {mask_ratio} hides {hide} of {length} patches; need at least one hidden and one seen")
    visible = length - hide
    per_round = -(-length // visible)
    masks = torch.ones(num, length, dtype=torch.bool)
    for start in range(0, num, per_round):
        order = torch.rand(length, generator=generator).argsort()
        padded = torch.cat([order, order[:per_round * visible - length]])  # wrap round to fill the last set
        for j in range(min(per_round, num - start)):
            masks[start + j, padded[j * visible:(j + 1) * visible]] = False
    return masks


MASK_SCHEDULES = {"random": random_masks, "balanced": balanced_masks}


@torch.no_grad()
def masked_errors(model: MaskedAutoencoder, images: Tensor, num_masks: int = 64, mask_ratio: float = 0.75,
                  seed: int = 0, batch_size: int = 512, precision: str = "auto",
                  schedule: str = "random") -> MaskedErrors:
    """Reconstruction errors of normalised ``images`` [N, 3, H, W] under ``num_masks`` masks each.

    The masks are drawn from ``seed`` and shared by all images (each image gets the same set),
    so in fp32 results do not depend on batching (in bf16 they may, by rounding). Forward passes take ``batch_size``
    image copies; ``precision`` as in ``resolve_precision`` (auto: bf16 where native).
    ``schedule``: ``random`` masks, or ``balanced`` ones (:func:`balanced_masks`).
    """
    if schedule not in MASK_SCHEDULES:
        raise ValueError(f"unknown mask schedule '{schedule}'; choose one of {', '.join(MASK_SCHEDULES)}")
    generator = torch.Generator().manual_seed(seed)
    masks = MASK_SCHEDULES[schedule](num_masks, model.num_patches, mask_ratio, generator)  # [K, L]
    device = next(model.parameters()).device
    run_as = resolve_precision(precision, device)
    n = images.shape[0]
    errors = []
    with autocast(run_as):
        for start in range(0, n * num_masks, batch_size):  # copy index = image * K + mask
            index = torch.arange(start, min(start + batch_size, n * num_masks))
            chunk = images[index // num_masks].to(device)  # only this pass's copies in memory
            out = model.patch_errors(chunk, mask=masks[index % num_masks].to(device).float())
            errors.append(out.errors.float().cpu())
    errors = torch.cat(errors).view(n, num_masks, -1)
    return MaskedErrors(errors=errors, hidden=masks.expand(n, -1, -1).clone())


@torch.no_grad()
def encoder_features(model: MaskedAutoencoder, images: Tensor, batch_size: int = 256) -> Tensor:
    """[N, L, D] encoder tokens of every patch (none hidden), L2-normalised."""
    device = next(model.parameters()).device
    precision = resolve_precision("auto", device)
    feats = []
    with autocast(precision):
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start:start + batch_size].to(device)
            keep_all = torch.zeros(chunk.shape[0], model.num_patches, device=device)
            latent, _, _ = model.forward_encoder(chunk, mask=keep_all)
            feats.append(latent[:, 1:].float().cpu())
    return torch.nn.functional.normalize(torch.cat(feats), dim=-1)


def grid_edges(rows: int, cols: int, radius: int = 1) -> np.ndarray:
    """[E, 2] index pairs (i < j) of patches at most ``radius`` apart (Chebyshev distance)."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    pairs = []
    for dr in range(0, radius + 1):
        for dc in range(-radius, radius + 1):
            if dr == 0 and dc <= 0:
                continue  # each unordered pair once
            ok = (r + dr < rows) & (c + dc >= 0) & (c + dc < cols)
            i = np.flatnonzero(ok)
            pairs.append(np.stack([i, i + dr * cols + dc], 1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def border_patches(rows: int, cols: int) -> np.ndarray:
    """[L] bool: the patch lies on the image border."""
    r, c = np.divmod(np.arange(rows * cols), cols)
    return (r == 0) | (c == 0) | (r == rows - 1) | (c == cols - 1)


def error_weights(relative: np.ndarray, edges: np.ndarray, sigma_scale: float) -> np.ndarray:
    """Edge weights from relative errors [L]: exp(-|log r_i - log r_j| / sigma)."""
    log_r = np.log(np.maximum(relative, EPS))
    diff = np.abs(log_r[edges[:, 0]] - log_r[edges[:, 1]])
    sigma = max(sigma_scale * float(diff.mean()), EPS) if len(diff) else 1.0
    return np.exp(-diff / sigma)


def influence_weights(influence: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Edge weights from influence [L, L]: max(0, symmetrised influence)."""
    sym = (influence[edges[:, 0], edges[:, 1]] + influence[edges[:, 1], edges[:, 0]]) / 2
    return np.maximum(sym, 0.0)


def feature_weights(features: np.ndarray, edges: np.ndarray, tau: float) -> np.ndarray:
    """Edge weights from L2-normalised features [L, D]: exp((cos - 1) / tau)."""
    cos = np.einsum("ed,ed->e", features[edges[:, 0]], features[edges[:, 1]])
    return np.exp((cos - 1.0) / tau)


def keep_strongest(edges: np.ndarray, weights: np.ndarray, num_nodes: int, knn: int) -> np.ndarray:
    """[E] bool: edges among the ``knn`` strongest of at least one of their two nodes."""
    if knn <= 0:
        return np.ones(len(edges), dtype=bool)
    keep = np.zeros(len(edges), dtype=bool)
    for node in range(num_nodes):
        touching = np.flatnonzero((edges[:, 0] == node) | (edges[:, 1] == node))
        keep[touching[np.argsort(-weights[touching], kind="stable")[:knn]]] = True
    return keep


@dataclass
class PatchGraph:
    """One image's weighted patch graph."""

    rows: int
    cols: int
    edges: np.ndarray  # [E, 2] int
    weights: np.ndarray  # [E] float, > 0
    relative_error: np.ndarray  # [rows * cols] r(i), for figures

    @property
    def num_nodes(self) -> int:
        return self.rows * self.cols

    def to_igraph(self) -> igraph.Graph:
        graph = igraph.Graph(n=self.num_nodes, edges=self.edges.tolist(), directed=False)
        graph.es["weight"] = self.weights.tolist()
        return graph

    def adjacency(self) -> np.ndarray:
        """[L, L] symmetric weight matrix."""
        a = np.zeros((self.num_nodes, self.num_nodes))
        a[self.edges[:, 0], self.edges[:, 1]] = self.weights
        a[self.edges[:, 1], self.edges[:, 0]] = self.weights
        return a


def build_graphs(model: MaskedAutoencoder, images: Tensor, affinity: str = "error", num_masks: int = 64,
                 mask_ratio: float = 0.75, radius: int = 1, sigma_scale: float = 0.5, tau: float = 0.1,
                 knn: int = 0, seed: int = 0, batch_size: int = 512, schedule: str = "random") -> list[PatchGraph]:
    """The patch graph of every normalised image [N, 3, H, W] (see the module docstring)."""
    if affinity not in AFFINITIES:
        raise ValueError(f"unknown affinity '{affinity}'; choose one of {', '.join(AFFINITIES)}")
    rows, cols = model.grid_size
    edges = grid_edges(rows, cols, radius)
    measured = masked_errors(model, images, num_masks, mask_ratio, seed, batch_size, schedule=schedule)
    relative = measured.relative().numpy()
    influence = measured.influence().numpy() if affinity == "influence" else None
    features = encoder_features(model, images).numpy() if "features" in affinity else None
    graphs = []
    for n in range(images.shape[0]):
        if affinity == "error":
            weights = error_weights(relative[n], edges, sigma_scale)
        elif affinity == "influence":
            weights = influence_weights(influence[n], edges)
        elif affinity == "features":
            weights = feature_weights(features[n], edges, tau)
        else:
            weights = np.sqrt(error_weights(relative[n], edges, sigma_scale) * feature_weights(features[n], edges, tau))
        keep = keep_strongest(edges, weights, rows * cols, knn) & (weights > EPS)
        graphs.append(PatchGraph(rows, cols, edges[keep], weights[keep], relative[n]))
    return graphs


def to_pixels(patch_scores: np.ndarray, rows: int, cols: int, height: int, width: int) -> np.ndarray:
    """[H, W] float32: per-patch scores [rows * cols] resized bilinearly (patch centers keep their value)."""
    grid = np.asarray(patch_scores, dtype=np.float32).reshape(rows, cols)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
