"""Reconstruction figures in the paper's layout, plus a heatmap of per-patch errors.

One row per image: original | masked input | reconstruction | reconstruction with the
visible patches pasted back | error of every removed patch (viridis, from 0 to the
image's largest error, both numbers written in the panel; visible patches darkened). Images are resized to the model's input size,
whole (a non-square image is squeezed, not cropped). Masks come from ``seed`` in file
order, so the same call draws the same figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from ..data.errors import DataError
from ..data.io import load_rgb
from ..engine.precision import autocast, resolve_precision
from ..viz.draw import save_png
from .data import ImageFolder, denormalize, eval_transform
from .model import NORM_PIX_EPS, MaskedAutoencoder

PANEL_MIN_SIDE = 160  # px; smaller inputs are enlarged (nearest) to at least this in figures
HEADER = 22  # px of the title strip above the panels
GAP = 4  # px between panels
COLORBAR = 10  # px width of the error colour bar
MASKED_GRAY = 0.45  # value of removed patches in the masked-input panel
DARKEN = 0.3  # factor on visible patches in the error panel
BATCH = 32  # images per forward pass


@dataclass
class Reconstruction:
    """One image through the MAE, as the figure shows it."""

    name: str
    original: Tensor  # [3, H, W] RGB in [0, 1], the model's (resized) input
    reconstruction: Tensor  # [3, H, W] RGB in [0, 1], every patch as predicted
    mask: Tensor  # [rows, cols] bool, True: removed
    errors: Tensor  # [rows, cols] per-patch error in loss units (targets as in training)
    loss: float  # mean error over the removed patches


def reconstruct(model: MaskedAutoencoder, images: Tensor, names: list[str], mask_ratio: float = 0.75,
                generator: torch.Generator | None = None) -> list[Reconstruction]:
    """Reconstruct normalised images [N, 3, H, W] under random masks drawn from ``generator``.

    A model trained with normalised targets (norm_pix_loss) predicts each patch without its
    mean and variance; those of the true patch are put back for display, as the paper does.
    """
    noise = torch.rand(images.shape[0], model.num_patches, generator=generator)
    precision = resolve_precision("auto", next(model.parameters()).device)
    with torch.no_grad(), autocast(precision):
        out = model.patch_errors(images.to(precision.device), noise=noise, mask_ratio=mask_ratio)
    pred = out.pred.float().cpu()  # [N, L, p*p*C]
    if model.config.norm_pix_loss:
        target = model.patchify(images)
        pred = pred * (target.var(dim=-1, keepdim=True) + NORM_PIX_EPS) ** 0.5 + target.mean(dim=-1, keepdim=True)
    shown = denormalize(model.unpatchify(pred)).clamp(0, 1)  # [N, 3, H, W]
    originals = denormalize(images).clamp(0, 1)
    rows, cols = model.grid_size
    mask, errors = out.mask.cpu().bool(), out.errors.float().cpu()
    return [
        Reconstruction(name, originals[i], shown[i], mask[i].view(rows, cols), errors[i].view(rows, cols),
                       float(errors[i][mask[i]].mean()) if mask[i].any() else 0.0)
        for i, name in enumerate(names)
    ]


def _panels(rec: Reconstruction, vmax: float) -> list[np.ndarray]:
    """The five panels of a row as [H, W, 3] uint8."""
    height, width = rec.original.shape[-2:]
    rows, cols = rec.mask.shape
    removed = rec.mask.repeat_interleave(height // rows, 0).repeat_interleave(width // cols, 1)  # [H, W]
    masked = torch.where(removed, torch.full_like(rec.original, MASKED_GRAY), rec.original)
    pasted = torch.where(removed, rec.reconstruction, rec.original)
    scaled = (rec.errors / max(vmax, 1e-12)).clamp(0, 1).mul(255).byte().numpy()  # [rows, cols]
    heat = cv2.applyColorMap(scaled, cv2.COLORMAP_VIRIDIS)[..., ::-1]  # [rows, cols, 3] RGB
    heat = torch.from_numpy(np.ascontiguousarray(heat)).permute(2, 0, 1).float() / 255
    heat = heat.repeat_interleave(height // rows, 1).repeat_interleave(width // cols, 2)
    heat = torch.where(removed, heat, rec.original.mean(0, keepdim=True).expand(3, -1, -1) * DARKEN)
    return [_to_uint8(p) for p in (rec.original, masked, rec.reconstruction, pasted, heat)]


def _to_uint8(image: Tensor) -> np.ndarray:
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def _text(canvas: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int] = (0, 0, 0),
          outline: tuple[int, int, int] | None = None) -> None:
    if outline is not None:
        cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, outline, 3, cv2.LINE_AA)
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.42, color, 1, cv2.LINE_AA)


def reconstruction_figure(recs: list[Reconstruction], mask_ratio: float) -> Tensor:
    """The figure of ``recs`` (one row each) as a [3, H, W] uint8 image."""
    if not recs:
        raise ValueError("no reconstructions to draw")
    height, width = recs[0].original.shape[-2:]
    zoom = max(1, -(-PANEL_MIN_SIDE // max(height, width)))
    ph, pw = height * zoom, width * zoom
    titles = ("original", f"masked {mask_ratio:.0%}", "reconstruction", "recon. + visible", "patch error")
    canvas = np.full((HEADER + len(recs) * (ph + GAP), 5 * (pw + GAP) + COLORBAR + GAP, 3), 255, np.uint8)
    for j, title in enumerate(titles):
        _text(canvas, title, j * (pw + GAP) + 2, HEADER - 7)
    for i, rec in enumerate(recs):
        top = HEADER + i * (ph + GAP)
        vmax = float(rec.errors[rec.mask].max()) if rec.mask.any() else 0.0
        for j, panel in enumerate(_panels(rec, vmax)):
            canvas[top:top + ph, j * (pw + GAP):j * (pw + GAP) + pw] = cv2.resize(
                panel, (pw, ph), interpolation=cv2.INTER_NEAREST)
        _text(canvas, f"mean {rec.loss:.3g}  max {vmax:.3g}", 4 * (pw + GAP) + 3, top + ph - 5,
              (255, 255, 255), (0, 0, 0))
        ramp = np.linspace(255, 0, ph).astype(np.uint8)[:, None]  # top: the largest error
        bar = cv2.applyColorMap(ramp, cv2.COLORMAP_VIRIDIS)[..., ::-1]
        canvas[top:top + ph, 5 * (pw + GAP):5 * (pw + GAP) + COLORBAR] = bar
    return torch.from_numpy(canvas).permute(2, 0, 1).contiguous()


def _output_name(path: Path, root: Path | None) -> str:
    """``a/b/c.jpg`` below ``root`` -> ``a__b__c.png`` (unique across subfolders)."""
    relative = path.relative_to(root) if root is not None else Path(path.name)
    return "__".join(relative.with_suffix("").parts) + ".png"


def reconstruct_files(model: MaskedAutoencoder, source: str | os.PathLike, out_dir: str | os.PathLike,
                      mask_ratio: float = 0.75, seed: int = 0) -> dict:
    """A figure per image of ``source`` (a file, or a folder searched recursively) into ``out_dir``.

    A single unreadable file raises ImageDecodeError; in a folder it is skipped, warned
    about and counted. Returns images, skipped, mean_loss (over all removed patches).
    """
    source, out_dir = Path(source), Path(out_dir)
    folder = ImageFolder(source) if source.is_dir() else None
    paths = folder.paths if folder is not None else [source]
    transform = eval_transform(model.config.image_hw)
    generator = torch.Generator().manual_seed(seed)
    written, losses = 0, []
    for start in range(0, len(paths), BATCH):
        batch = [(p, folder.decode(p) if folder is not None else load_rgb(p)) for p in paths[start:start + BATCH]]
        batch = [(p, pixels) for p, pixels in batch if pixels is not None]
        if not batch:
            continue
        images = torch.stack([transform(torch.from_numpy(pixels).permute(2, 0, 1)) for _, pixels in batch])
        names = [_output_name(p, folder.root if folder is not None else None) for p, _ in batch]
        for rec in reconstruct(model, images, names, mask_ratio, generator):
            save_png(reconstruction_figure([rec], mask_ratio), out_dir / rec.name)
            losses.append(rec.loss)
            written += 1
    skipped = len(folder.skipped) if folder is not None else 0
    if written == 0:
        raise DataError(source, "no readable image in this folder or below")
    return {"images": written, "skipped": skipped, "mean_loss": float(np.mean(losses)) if losses else None}
