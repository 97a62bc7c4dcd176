"""From communities to one binary foreground mask.

The rule (``contrast``), per level of the Louvain hierarchy:

1. The background's error level is read from the border: ``m = median log r(i)`` over the
   border patches, its spread ``s = MAD + 0.05`` (the floor keeps a perfectly uniform border
   from making every tiny difference an object).
2. A community ``c`` is foreground when its mean log relative error departs from the
   background's by more than ``contrast`` spreads: ``|mean_{i in c} log r(i) - m| / s > contrast``.
   The test is two-sided: an object may be harder to predict than its background (a textured
   thing on a smooth wall) or easier (a plain thing on grass); the sign is not assumed.
3. Every level votes; the patch score is the share of levels that call it foreground
   (``levels: vote``; ``first`` or ``last`` use one level). Scores are resized to pixels
   bilinearly and thresholded at 0.5.

Refinement (``refine: grabcut``): the mask seeds OpenCV's GrabCut, probable foreground where
the score is at least 0.5, probable background elsewhere; GrabCut's colour models and its
contrast-sensitive smoothness term then move the boundary onto the image's edges, which the
patch grid cannot resolve.
"""

from __future__ import annotations

import cv2
import numpy as np

from .baselines import grabcut_mask

SPREAD_FLOOR = 0.05  # added to the border's MAD of log errors
BORDER_MAJORITY = 0.5  # a community holding this share of the border patches is background
LEVEL_CHOICES = ("vote", "first", "last")


def background_level(log_error: np.ndarray, border: np.ndarray) -> tuple[float, float]:
    """(median, spread) of the log relative errors of the border patches."""
    values = log_error[border]
    median = float(np.median(values))
    return median, float(np.median(np.abs(values - median))) + SPREAD_FLOOR


def community_contrast(membership: np.ndarray, log_error: np.ndarray, border: np.ndarray) -> np.ndarray:
    """[C] |mean log error of each community - the border's median| in border spreads."""
    median, spread = background_level(log_error, border)
    count = np.bincount(membership)
    mean = np.bincount(membership, weights=log_error) / np.maximum(count, 1)
    return np.abs(mean - median) / spread


def foreground_score(levels: list[np.ndarray], relative_error: np.ndarray, border: np.ndarray,
                     contrast: float = 2.0, use: str = "vote") -> np.ndarray:
    """[L] float in [0, 1]: the share of the chosen levels whose communities call each patch foreground."""
    if use not in LEVEL_CHOICES:
        raise ValueError(f"unknown level choice '{use}'; choose one of {', '.join(LEVEL_CHOICES)}")
    chosen = {"vote": levels, "first": levels[:1], "last": levels[-1:]}[use]
    log_error = np.log(np.maximum(relative_error, 1e-8))
    votes = []
    for membership in chosen:
        foreground = community_contrast(membership, log_error, border) > contrast
        border_share = np.bincount(membership[border], minlength=len(foreground)) / max(int(border.sum()), 1)
        foreground[border_share >= BORDER_MAJORITY] = False  # the community that is most of the border
        votes.append(foreground[membership])
    return np.mean(votes, axis=0).astype(np.float32)


def refine_with_grabcut(image: np.ndarray, score: np.ndarray, seed: int = 0) -> np.ndarray:
    """[H, W] bool: GrabCut on RGB ``image`` [H, W, 3] started from the pixel ``score`` [H, W]."""
    init = np.where(score >= 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    return grabcut_mask(image, init, seed=seed)
