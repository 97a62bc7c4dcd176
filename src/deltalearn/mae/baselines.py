"""Baselines for binary foreground segmentation, scored on the same images as the patch graph.

- ``center_prior``: a centered Gaussian, ``exp(-((x - cx)^2 / (2 (s W)^2) + (y - cy)^2 / (2 (s H)^2)))``
  with ``s = 0.25``: the saliency literature's center bias, which any method must beat.
- ``grabcut``: OpenCV's GrabCut (Rother et al. 2004) from a centered rectangle leaving a
  margin of 10 % of each side, 5 iterations; the classic interactive method with a fixed box.
- ``ncut``: normalized cut (Shi and Malik 2000) on the same patch graph as the method: the
  second-smallest generalised eigenvector of ``(D - W) y = lambda D y``, split at its mean;
  as TokenCut does on DINO features, the foreground is the side holding the patch of the
  largest ``|y|``.
- ``patch_ceiling``: not a method but a bound: the ground truth itself, reduced to the patch
  grid (a patch is foreground when at least half of it is) and resized back as the method's
  patch decisions are (``to_pixels``). No method that
  decides per patch can beat it.
"""

from __future__ import annotations

import cv2
import numpy as np
import scipy.linalg

from .patch_graph import PatchGraph, to_pixels

CENTER_SIGMA = 0.25  # of the image side
GRABCUT_MARGIN = 0.1  # of the image side, on every edge
GRABCUT_ITERATIONS = 5


def center_prior(height: int, width: int) -> np.ndarray:
    """[H, W] float score in (0, 1], 1 at the image center."""
    y = (np.arange(height) + 0.5) / height - 0.5
    x = (np.arange(width) + 0.5) / width - 0.5
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * CENTER_SIGMA**2)).astype(np.float32)


def grabcut_mask(image: np.ndarray, init: np.ndarray | None = None, iterations: int = GRABCUT_ITERATIONS,
                 seed: int = 0) -> np.ndarray:
    """[H, W] bool foreground of GrabCut on RGB uint8 ``image`` [H, W, 3].

    Without ``init``: from the centered rectangle. With ``init`` ([H, W] uint8 of OpenCV's
    ``GC_BGD``/``GC_FGD``/``GC_PR_BGD``/``GC_PR_FGD``): from that labelling. When the start
    has no foreground or no background sample, GrabCut cannot fit its colour models and the
    start's own foreground is returned.
    """
    height, width = image.shape[:2]
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[..., ::-1])
    cv2.setRNGSeed(seed)
    if init is None:
        mx, my = max(1, round(GRABCUT_MARGIN * width)), max(1, round(GRABCUT_MARGIN * height))
        rect = (mx, my, max(1, width - 2 * mx), max(1, height - 2 * my))
        mask = np.zeros((height, width), np.uint8)
        if width - 2 * mx < 1 or height - 2 * my < 1:
            return np.zeros((height, width), bool)
        cv2.grabCut(bgr, mask, rect, bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    else:
        mask = init.astype(np.uint8).copy()
        fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        if fg.all() or not fg.any():
            return fg
        cv2.grabCut(bgr, mask, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def ncut_split(graph: PatchGraph) -> np.ndarray:
    """[L] bool foreground patches of the normalized cut of ``graph``."""
    w = graph.adjacency()
    degree = w.sum(1)
    isolated = degree <= 0
    if isolated.all() or graph.num_nodes < 2:
        return np.zeros(graph.num_nodes, bool)
    d = np.where(isolated, 1.0, degree)  # isolated patches: a unit degree keeps D positive definite
    _, vectors = scipy.linalg.eigh(np.diag(d) - w, np.diag(d), subset_by_index=[1, 1])
    y = vectors[:, 0]
    side = y > y.mean()
    return side if side[np.argmax(np.abs(y))] else ~side


def patch_ceiling(truth: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """[H, W] bool: ground truth [H, W] reduced to a rows x cols grid (majority) and resized back."""
    height, width = truth.shape
    share = cv2.resize(truth.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
    return to_pixels((share >= 0.5).ravel(), rows, cols, height, width) >= 0.5
