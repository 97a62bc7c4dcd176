"""MAE patch-graph segmentation of images: errors -> graph -> Louvain levels -> foreground mask.

``PatchGraphSegmenter(model, config).segment(images)`` takes RGB uint8 images of any size and
aspect ratio. Each is resized whole to the MAE's input (a non-square image is squeezed,
not cropped, so every pixel keeps a patch), segmented on the patch grid, and its score
resized back to the image's own size. ``segment_files`` writes, per image, the mask
(``masks/<stem>.png``, 0 or 255) and the figure of every level (``figures/<stem>.png``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..data.errors import DataError, DataWarning
from ..data.io import IMAGE_SUFFIXES, load_rgb, write_mask
from ..viz.draw import palette, save_png
from .baselines import ncut_split
from .communities import ALGORITHMS, community_levels
from .data import ImageFolder, eval_transform
from .foreground import LEVEL_CHOICES, foreground_score, refine_with_grabcut
from .model import MaskedAutoencoder
from .patch_graph import AFFINITIES, MASK_SCHEDULES, PatchGraph, border_patches, build_graphs, to_pixels

PANEL = 160  # px side of a figure panel
HEADER = 20  # px of the title strip
GAP = 4  # px between panels
BATCH = 16  # images per call of build_graphs (x num_masks copies in forward passes)


@dataclass
class PatchGraphConfig:
    """How images become patch graphs, communities and masks (defaults: picked on a tuning set)."""

    affinity: str = "error"  # error | influence | features | error+features (see patch_graph)
    num_masks: int = 32  # masks per image: forward passes of the MAE (benchmarks/mae_mask_defaults.py)
    masks: str = "balanced"  # balanced: every patch seen equally often (patch_graph.balanced_masks) | random
    mask_ratio: float = 0.75  # share of patches hidden in each mask
    radius: int = 1  # grid neighbours joined by edges (1: 8 neighbours)
    sigma_scale: float = 0.5  # error affinity: sigma = this x mean neighbour |log r_i - log r_j|
    tau: float = 0.1  # feature affinity temperature
    knn: int = 0  # keep each node's k strongest edges; 0: all
    algorithm: str = "louvain"  # louvain | leiden
    resolution: float = 2.0  # modularity resolution gamma: higher, more and smaller communities
    contrast: float = 2.0  # foreground: community error departs from the border's by this many spreads
    levels: str = "vote"  # vote | first | last: which Louvain levels decide
    refine: str = "none"  # none | grabcut: move the patch mask's boundary onto image edges
    seed: int = 0  # masks and community detection
    batch_size: int = 512  # image copies per forward pass

    def __post_init__(self) -> None:
        choices = {"affinity": AFFINITIES, "algorithm": ALGORITHMS, "levels": LEVEL_CHOICES,
                   "refine": ("none", "grabcut"), "masks": tuple(MASK_SCHEDULES)}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, got '{getattr(self, key)}'")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.num_masks < 2:
            raise ValueError(f"num_masks must be at least 2, got {self.num_masks}")


@dataclass
class Segmentation:
    """One image's result."""

    levels: list[np.ndarray]  # community memberships [L] per level, finest first
    patch_score: np.ndarray  # [L] share of levels voting foreground
    score: np.ndarray  # [H, W] float in [0, 1] at the image's size
    mask: np.ndarray  # [H, W] bool final mask (refined when configured)
    graph: PatchGraph = field(repr=False)


class PatchGraphSegmenter:
    """Segments RGB uint8 images [H, W, 3] with a trained MAE."""

    def __init__(self, model: MaskedAutoencoder, config: PatchGraphConfig | None = None) -> None:
        self.model = model.eval()
        self.config = config or PatchGraphConfig()
        self.transform = eval_transform(model.config.image_hw)
        self.border = border_patches(*model.grid_size)

    def check_size(self, image: np.ndarray, name: str = "image") -> None:
        patch = self.model.config.patch_size
        height, width = image.shape[:2]
        if height < patch or width < patch:
            raise DataError(name, f"{width}x{height} px is smaller than one {patch} px patch of the MAE")

    def graphs(self, images: list[np.ndarray]) -> list[PatchGraph]:
        c = self.config
        x = torch.stack([self.transform(torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1))
                         for im in images])
        return build_graphs(self.model, x, c.affinity, c.num_masks, c.mask_ratio, c.radius, c.sigma_scale,
                            c.tau, c.knn, c.seed, c.batch_size, c.masks)

    def segment(self, images: list[np.ndarray], refine: bool | None = None) -> list[Segmentation]:
        """One result per RGB uint8 image; ``refine`` overrides ``config.refine`` (None: the config's)."""
        c = self.config
        refine = c.refine == "grabcut" if refine is None else refine
        for image in images:
            self.check_size(image)
        results = []
        for start in range(0, len(images), BATCH):
            chunk = images[start:start + BATCH]
            for image, graph in zip(chunk, self.graphs(chunk)):
                levels = community_levels(graph, c.algorithm, c.resolution, c.seed)
                patch_score = foreground_score(levels, graph.relative_error, self.border, c.contrast, c.levels)
                score = to_pixels(patch_score, graph.rows, graph.cols, *image.shape[:2])
                mask = refine_with_grabcut(image, score, c.seed) if refine else score >= 0.5
                results.append(Segmentation(levels, patch_score, score, mask, graph))
        return results


def ncut_score(graph: PatchGraph, height: int, width: int) -> np.ndarray:
    """[H, W] normalized-cut foreground of the same graph, as 0/1 scores at pixel size."""
    return to_pixels(ncut_split(graph).astype(np.float32), graph.rows, graph.cols, height, width)


# ---- figures --------------------------------------------------------------------------------


def _panel(image: np.ndarray) -> np.ndarray:
    return cv2.resize(image, (PANEL, PANEL), interpolation=cv2.INTER_NEAREST)


def _communities(image: np.ndarray, membership: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Communities coloured over the gray image, patch borders between communities drawn."""
    colors = np.array(palette(int(membership.max()) + 1), np.float32)
    grid = membership.reshape(rows, cols)
    tint = cv2.resize(colors[grid], (PANEL, PANEL), interpolation=cv2.INTER_NEAREST)
    gray = cv2.cvtColor(_panel(image), cv2.COLOR_RGB2GRAY)[..., None].astype(np.float32)
    out = (0.45 * gray + 0.55 * tint).astype(np.uint8)
    labels = cv2.resize(grid.astype(np.int32), (PANEL, PANEL), interpolation=cv2.INTER_NEAREST)
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    out[edge] = 0
    return out


def _heat(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    v = np.log(np.maximum(values, 1e-8)).reshape(rows, cols)
    v = ((v - v.min()) / max(float(v.max() - v.min()), 1e-8) * 255).astype(np.uint8)
    return _panel(cv2.applyColorMap(v, cv2.COLORMAP_VIRIDIS)[..., ::-1])


def _overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    panel = _panel(image).astype(np.float32)
    m = cv2.resize(mask.astype(np.uint8), (PANEL, PANEL), interpolation=cv2.INTER_NEAREST) > 0
    panel[~m] *= 0.25
    return panel.astype(np.uint8)


def segmentation_figure(image: np.ndarray, result: Segmentation, truth: np.ndarray | None = None) -> torch.Tensor:
    """The work's Figure 3 for one image: image | error | every level | mask [| ground truth]."""
    g = result.graph
    panels = [("image", _panel(image)), ("relative error", _heat(g.relative_error, g.rows, g.cols))]
    panels += [(f"level {i} ({int(m.max()) + 1})", _communities(image, m, g.rows, g.cols))
               for i, m in enumerate(result.levels)]
    panels.append(("foreground", _overlay(image, result.mask)))
    if truth is not None:
        panels.append(("ground truth", _overlay(image, truth)))
    canvas = np.full((HEADER + PANEL, len(panels) * (PANEL + GAP) - GAP, 3), 255, np.uint8)
    for j, (title, panel) in enumerate(panels):
        x = j * (PANEL + GAP)
        canvas[HEADER:, x:x + PANEL] = panel
        cv2.putText(canvas, title, (x + 2, HEADER - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return torch.from_numpy(canvas).permute(2, 0, 1).contiguous()


# ---- files ----------------------------------------------------------------------------------


def output_stem(path: Path, root: Path | None) -> str:
    """``a/b/c.jpg`` below ``root`` -> ``a__b__c`` (unique across subfolders)."""
    relative = path.relative_to(root) if root is not None else Path(path.name)
    return "__".join(relative.with_suffix("").parts)


def segment_files(segmenter: PatchGraphSegmenter, source: str | os.PathLike, out_dir: str | os.PathLike,
                  figures: bool = True, progress: bool = True) -> dict:
    """Masks (and figures) for an image file or every image below a folder; returns counts.

    In a folder, an unreadable image or one smaller than a patch is skipped, warned about and
    counted; a single file with either problem is an error.
    """
    source, out_dir = Path(source), Path(out_dir)
    if not source.exists():
        raise DataError(source, "image file or folder not found")
    folder = ImageFolder(source) if source.is_dir() else None
    paths = folder.paths if folder is not None else [source]
    if folder is None and source.suffix.lower() not in IMAGE_SUFFIXES:
        raise DataError(source, f"not an image file ({' '.join(IMAGE_SUFFIXES)})")
    written, too_small = 0, {}
    with tqdm(total=len(paths), desc="mae segment", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), BATCH):
            batch = []
            for path in paths[start:start + BATCH]:
                pixels = folder.decode(path) if folder is not None else load_rgb(path)
                if pixels is None:
                    continue
                try:
                    segmenter.check_size(pixels, str(path))
                except DataError as error:
                    if folder is None:
                        raise
                    too_small[str(path)] = error.problem
                    warnings.warn(f"skipping image: {error}", DataWarning, stacklevel=2)
                    continue
                batch.append((path, pixels))
            for (path, pixels), result in zip(batch, segmenter.segment([p for _, p in batch])):
                stem = output_stem(path, folder.root if folder is not None else None)
                write_mask(result.mask, out_dir / "masks" / f"{stem}.png")
                if figures:
                    save_png(segmentation_figure(pixels, result), out_dir / "figures" / f"{stem}.png")
                written += 1
            bar.update(len(paths[start:start + BATCH]))
    skipped = (len(folder.skipped) if folder is not None else 0) + len(too_small)
    if written == 0:
        raise DataError(source, "no readable image of at least one patch in this folder or below")
    return {"images": written, "skipped": skipped, "too_small": too_small}
