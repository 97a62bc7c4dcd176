"""Scores of binary foreground segmentation against ground-truth masks, and ``deltalearn mae eval``.

- ``iou``: per image, ``|P & G| / |P | G|`` with ``P = score >= 0.5``, averaged over images (an
  image where both are empty counts 1).
- ``max_fbeta``: as in the unsupervised saliency literature (e.g. Achanta et al. 2009;
  Wang et al. 2022 for TokenCut): at each of 255 thresholds ``t``, precision and recall of
  ``score >= t`` per image, averaged over images, ``F = (1 + b2) P R / (b2 P + R)`` with
  ``b2 = 0.3``; the maximum over thresholds. A binary method has one effective threshold.

``evaluate_folder`` scores the patch-graph method, with and without GrabCut refinement, and
the baselines (center prior, GrabCut from a centered rectangle, normalized cut on the same
patch graph, and normalized cut refined by the same GrabCut step as the method, so that the
refinement is compared like for like) on the same images, and reports the patch-grid
ceiling beside them. Given a segmentation head (``mae train-head``), it also scores the
head's probabilities, alone and refined by GrabCut.
"""

from __future__ import annotations

import heapq
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.errors import DataError
from ..data.io import image_root, match_masks, read_mask
from .baselines import center_prior, grabcut_mask, patch_ceiling
from .data import ImageFolder
from .foreground import refine_with_grabcut
from .seg_head import MAESegmenter, predict_foreground
from .segment import PatchGraphSegmenter, Segmentation, ncut_score

BETA2 = 0.3
THRESHOLDS = np.arange(1, 256) / 256.0  # score >= t, t in (0, 1)


def iou_at_half(score: np.ndarray, truth: np.ndarray) -> float:
    predicted = score >= 0.5
    union = np.logical_or(predicted, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, truth).sum() / union)


class FBetaCurve:
    """Accumulates per-image precision and recall at every threshold."""

    def __init__(self) -> None:
        self.precision = np.zeros(len(THRESHOLDS))
        self.recall = np.zeros(len(THRESHOLDS))
        self.count = 0

    def add(self, score: np.ndarray, truth: np.ndarray) -> None:
        s, g = score.ravel().astype(np.float32), truth.ravel().astype(bool)
        # true positives and predicted positives at every threshold through one sort
        order = np.argsort(-s, kind="stable")
        s_sorted, g_sorted = s[order], g[order]
        tp_cum = np.concatenate([[0], np.cumsum(g_sorted)])
        n_pred = np.searchsorted(-s_sorted, -THRESHOLDS, side="right")  # count of s >= t
        tp = tp_cum[n_pred]
        self.precision += np.where(n_pred > 0, tp / np.maximum(n_pred, 1), 0.0 if g.any() else 1.0)
        self.recall += tp / g.sum() if g.any() else 1.0
        self.count += 1

    def mean(self) -> dict[str, list[float]]:
        """Mean precision and recall over images at each threshold (``THRESHOLDS``), rounded."""
        count = max(self.count, 1)
        return {"precision": np.round(self.precision / count, 4).tolist(),
                "recall": np.round(self.recall / count, 4).tolist()}

    def max_fbeta(self) -> float:
        if self.count == 0:
            return float("nan")
        p, r = self.precision / self.count, self.recall / self.count
        f = (1 + BETA2) * p * r / np.maximum(BETA2 * p + r, 1e-12)
        return float(f.max())


class Scores:
    """Mean IoU at 0.5 and max F-beta of one method over images."""

    def __init__(self) -> None:
        self.ious: list[float] = []
        self.curve = FBetaCurve()

    def add(self, score: np.ndarray, truth: np.ndarray) -> None:
        self.ious.append(iou_at_half(score, truth))
        self.curve.add(score, truth)

    def result(self) -> dict[str, float]:
        return {"iou": round(float(np.mean(self.ious)), 4) if self.ious else float("nan"),
                "max_fbeta": round(self.curve.max_fbeta(), 4)}


class Gallery:
    """Every image's IoU per method, and the ``keep`` worst and best images of the scored
    method (``evaluate_folder`` sets ``method``) with each method's score map, for the
    report's failure pictures (memory: 2 x ``keep`` images)."""

    def __init__(self, keep: int = 4) -> None:
        self.keep = keep
        self.method = "graph"
        self.per_image: list[dict] = []  # {"file": name, method: IoU, ...}
        self.curves: dict[str, dict[str, list[float]]] = {}  # method -> mean precision and recall per threshold
        self._worst: list[tuple] = []  # max-heap on IoU through negation: (-iou, -order, entry)
        self._best: list[tuple] = []  # min-heap on IoU: (iou, order, entry)

    def add(self, name: str, pixels: np.ndarray, truth: np.ndarray, scores: dict[str, np.ndarray],
            ious: dict[str, float]) -> None:
        """One image: its score map and IoU per method."""
        self.per_image.append({"file": name, **{method: round(v, 4) for method, v in ious.items()}})
        if self.keep <= 0 or self.method not in ious:
            return
        order = len(self.per_image)
        entry = {"file": name, "pixels": pixels, "truth": truth, "scores": scores, "ious": ious}
        iou = ious[self.method]
        for heap, key in ((self._worst, (-iou, -order)), (self._best, (iou, order))):
            if len(heap) < self.keep:
                heapq.heappush(heap, (*key, entry))
            elif key > heap[0][:2]:
                heapq.heapreplace(heap, (*key, entry))

    def worst(self) -> list[dict]:
        """The kept worst images, worst first."""
        return [entry for *_, entry in sorted(self._worst, key=lambda item: item[:2], reverse=True)]

    def best(self) -> list[dict]:
        """The kept best images not among the worst, best first."""
        worst = {id(entry) for entry in self.worst()}
        return [entry for *_, entry in sorted(self._best, key=lambda item: item[:2], reverse=True)
                if id(entry) not in worst]


def read_truth(image: Path, mask: Path | None, shape: tuple[int, int]) -> np.ndarray:
    """[H, W] bool ground truth (``data.io.read_mask``) of ``image`` of ``shape``; DataError when missing, unreadable or misfit."""
    if mask is None:
        raise DataError(image, "no ground-truth mask (masks pair with images by file name)")
    truth = read_mask(mask)
    if truth.shape != shape:
        raise DataError(mask, f"mask is {truth.shape[1]}x{truth.shape[0]} px but its image is {shape[1]}x{shape[0]} px")
    return truth


def score_maps(pixels: np.ndarray, result: Segmentation, prob: np.ndarray | None, baselines: bool,
               seed: int) -> dict[str, np.ndarray]:
    """The [H, W] score map of every method for one image: the patch graph's, refined by GrabCut,
    the head's (given ``prob``), and the baselines'."""
    height, width = pixels.shape[:2]
    found = {"graph": result.score, "graph+grabcut": refine_with_grabcut(pixels, result.score, seed).astype(np.float32)}
    if prob is not None:
        found["head"] = prob
        found["head+grabcut"] = refine_with_grabcut(pixels, prob, seed).astype(np.float32)
    if baselines:
        found["center_prior"] = center_prior(height, width)
        found["grabcut"] = grabcut_mask(pixels).astype(np.float32)
        ncut = ncut_score(result.graph, height, width)
        found["ncut"] = ncut
        found["ncut+grabcut"] = refine_with_grabcut(pixels, ncut, seed).astype(np.float32)
    return found


def evaluate_folder(segmenter: PatchGraphSegmenter, data_dir: str | os.PathLike, limit: int = 0,
                    baselines: bool = True, progress: bool = True, head: MAESegmenter | None = None,
                    gallery: Gallery | None = None, threads: int = 0) -> dict:
    """Scores on ``data_dir/images`` against ``data_dir/masks``; see the module docstring.

    An image without a usable mask is skipped and counted (``skipped``, with reasons). With
    ``head``, the variants ``head`` and ``head+grabcut`` are scored too. ``gallery``: given
    every image's score maps (the ceiling left out), and at the end each method's mean
    precision and recall at every threshold (``gallery.curves``). ``threads``: images scored at
    once on the CPU (0: one per core); the scores do not depend on it.
    """
    data_dir = Path(data_dir)
    root = image_root(data_dir)
    masks_dir = data_dir / "masks"
    if not masks_dir.is_dir():
        raise DataError(masks_dir, "masks folder not found (mae data folders hold images/ and masks/)")
    folder = ImageFolder(root)
    masks = match_masks(folder.paths[:limit] if limit > 0 else folder.paths, root, masks_dir)
    paths = list(masks)
    names = ["graph", "graph+grabcut", "head", "head+grabcut", "center_prior", "grabcut", "ncut", "ncut+grabcut",
             "patch_ceiling"]
    seed = segmenter.config.seed
    scores = {name: Scores() for name in names}
    skipped: dict[str, str] = {}
    rows, cols = segmenter.model.grid_size
    method = "graph+grabcut" if segmenter.config.refine == "grabcut" else "graph"
    if gallery is not None:
        gallery.method = method
    start = time.perf_counter()
    with (tqdm(total=len(paths), desc="mae eval", unit="img", disable=not progress) as bar,
          ThreadPoolExecutor(max_workers=threads or os.cpu_count() or 1) as pool):
        for first in range(0, len(paths), 16):
            batch = []
            for path in paths[first:first + 16]:
                pixels = folder.decode(path)
                if pixels is None:
                    skipped[str(path)] = folder.skipped.get(str(path), "unreadable image")
                    continue
                try:
                    truth = read_truth(path, masks[path], pixels.shape[:2])
                    segmenter.check_size(pixels, str(path))
                except DataError as error:
                    skipped[str(path)] = str(error)
                    continue
                batch.append((path, pixels, truth))
            images = [pixels for _, pixels, _ in batch]
            results = segmenter.segment(images, refine=False) if batch else []  # refined below
            probs = predict_foreground(head, images) if head is not None and batch else [None] * len(batch)
            # GrabCut and normalized cut are CPU work that releases the GIL: the images of a
            # batch run on threads, and are added in their order
            jobs = [(pixels, result, prob) for (_, pixels, _), result, prob in zip(batch, results, probs)]
            founds = pool.map(lambda job: score_maps(*job, baselines, seed), jobs)
            for (path, pixels, truth), found in zip(batch, founds):
                for name, score in found.items():
                    scores[name].add(score, truth)
                scores["patch_ceiling"].add(patch_ceiling(truth, rows, cols).astype(np.float32), truth)
                if gallery is not None:  # the IoUs that Scores.add has just computed
                    gallery.add(str(path.relative_to(root)), pixels, truth, found,
                                {name: scores[name].ious[-1] for name in found})
            bar.update(len(paths[first:first + 16]))
    if gallery is not None:
        gallery.curves = {n: scores[n].curve.mean() for n in names if scores[n].ious and n != "patch_ceiling"}
    if not scores[method].ious:
        raise DataError(data_dir, "no image with a usable ground-truth mask")
    return {
        **scores[method].result(),
        "method": method,
        "baselines": {n: scores[n].result() for n in ("center_prior", "grabcut", "ncut", "ncut+grabcut")
                      if scores[n].ious},
        "variants": {n: scores[n].result() for n in ("graph", "graph+grabcut", "head", "head+grabcut")
                     if scores[n].ious},
        "patch_ceiling": scores["patch_ceiling"].result(),
        "grid": [rows, cols],
        "images": len(scores[method].ious),
        "skipped": len(skipped),
        "skipped_reasons": dict(list(skipped.items())[:20]),
        "seconds": round(time.perf_counter() - start, 2),
    }


def format_eval(result: dict) -> str:
    """The results table of ``mae eval``."""
    rows = [("patch graph" + (" + GrabCut" if result["method"] == "graph+grabcut" else ""), result)]
    rows += [(f"  variant {name}", scores) for name, scores in result["variants"].items() if name != result["method"]]
    rows += [(f"  baseline {name}", scores) for name, scores in result["baselines"].items()]
    rows.append((f"  patch-grid ceiling {result['grid'][0]}x{result['grid'][1]}", result["patch_ceiling"]))
    lines = [f"{'method':<34} {'IoU':>7} {'max F':>7}"]
    lines += [f"{name:<34} {s['iou']:>7.3f} {s['max_fbeta']:>7.3f}" for name, s in rows]
    lines.append(f"{result['images']} images, {result['skipped']} skipped, {result['seconds']:.1f} s")
    return "\n".join(lines)
