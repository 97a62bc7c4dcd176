"""MAE pretraining on a folder of images, through the shared engine.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl``, the engine's
checkpoints (``last.safetensors``, ``last_state.pt``) and, at the end, ``mae.safetensors``
written by ``save_mae``: weights with their model config, so ``load_mae`` rebuilds the model.
``load_trained_mae`` accepts a run folder or a weight file, ours or official/Hugging Face.

Held-out evaluation reports the loss of the masked patches (``val_loss``) and that of the
trivial baseline on the same masks with the same loss (``val_baseline_loss``): every
removed patch predicted as the mean colour of the image's visible pixels.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from ..config import ConfigError, load_config, save_config
from ..data.io import image_root
from ..engine.checkpoint import LAST_STATE, CheckpointError, find_weights, load_weights, weights_metadata
from ..engine.distributed import dist_info, make_loader, print0, unwrap_model
from ..engine.precision import Precision, autocast, resolve_precision
from ..engine.trainer import Trainer, default_param_groups
from .config import MAEPretrainConfig
from .data import ImageFolder, eval_transform, train_transform
from .model import MaskedAutoencoder, create_mae, masked_mean, patchify
from .weights import FILE_FORMAT, load_mae, load_pretrained, save_mae

CONFIG_FILE = "config.yaml"
FINAL_WEIGHTS = "mae.safetensors"  # save_mae file of a finished (or time-stopped) run
NO_WEIGHT_DECAY = ("cls_token", "mask_token")  # besides norms and biases (the pos embeds are fixed buffers)
EVAL_SEED = 0  # seed of the held-out masks: every evaluation of a run uses the same ones
EVAL_BATCH = 128  # images per forward pass in evaluation


def build_model(config: MAEPretrainConfig) -> MaskedAutoencoder:
    """The configured variant at ``data.image_size``, freshly initialised."""
    return create_mae(config.model.variant, img_size=config.data.image_size,
                      norm_pix_loss=config.model.norm_pix_loss)


def mae_param_groups(model: MaskedAutoencoder, weight_decay: float, betas: tuple[float, float]) -> list[dict]:
    """The paper's AdamW groups: decay on weight matrices, none on norms, biases and tokens."""
    view = SimpleNamespace(named_parameters=model.named_parameters, no_weight_decay=lambda: NO_WEIGHT_DECAY)
    return [group | {"betas": tuple(betas)} for group in default_param_groups(view, weight_decay)]


def trivial_prediction(imgs: Tensor, mask: Tensor, patch_size: int, norm_pix_loss: bool = False) -> Tensor:
    """The trivial baseline's patches [N, L, p*p*C] for images [N, C, H, W] and mask [N, L] (1 removed).

    Pixel loss: every patch is the mean colour of the image's visible pixels. Normalised
    targets (norm_pix_loss) have mean 0 in every patch, so there the baseline predicts 0.
    """
    patches = patchify(imgs.float(), patch_size)  # [N, L, p*p*C]
    if norm_pix_loss:
        return torch.zeros_like(patches)
    n, length, values = patches.shape
    channels = imgs.shape[1]
    pixels = patches.reshape(n, length, values // channels, channels)  # [N, L, p*p, C]
    visible = (1 - mask.float())[..., None, None]  # [N, L, 1, 1]
    mean = (pixels * visible).sum(dim=(1, 2)) / (visible.sum(dim=(1, 2)) * pixels.shape[2]).clamp_min(1)  # [N, C]
    return mean[:, None, None, :].expand(n, length, pixels.shape[2], channels).reshape(n, length, values)


def heldout_losses(model: MaskedAutoencoder, images: Tensor, mask_ratio: float, precision: Precision,
                   seed: int = EVAL_SEED) -> dict[str, float]:
    """Mean masked-patch loss of ``model`` and of the trivial baseline on images [N, C, H, W].

    Masks come from ``seed``, so repeated calls use the same ones. Losses are averaged over
    all removed patches of all images.
    """
    noise = torch.rand(images.shape[0], model.num_patches, generator=torch.Generator().manual_seed(seed))
    sums = {"loss": 0.0, "baseline_loss": 0.0}
    removed = 0.0
    for start in range(0, images.shape[0], EVAL_BATCH):
        batch = images[start:start + EVAL_BATCH].to(precision.device)
        with torch.no_grad(), autocast(precision):
            out = model.patch_errors(batch, noise=noise[start:start + EVAL_BATCH], mask_ratio=mask_ratio)
        baseline = model.patch_loss(batch, trivial_prediction(batch, out.mask, model.config.patch_size,
                                                              model.config.norm_pix_loss))
        count = float(out.mask.sum())
        sums["loss"] += float(masked_mean(out.errors, out.mask)) * count
        sums["baseline_loss"] += float(masked_mean(baseline, out.mask)) * count
        removed += count
    return {name: value / max(removed, 1.0) for name, value in sums.items()}


def load_images(dataset: ImageFolder, limit: int = 0) -> Tensor:
    """The first ``limit`` (0: all) images of ``dataset``, stacked [N, C, H, W]."""
    count = len(dataset) if limit <= 0 else min(limit, len(dataset))
    return torch.stack([dataset[i] for i in range(count)])


def make_evaluate(val_dir: str | os.PathLike, config: MAEPretrainConfig) -> Callable[[MaskedAutoencoder], dict]:
    """``evaluate(model) -> {"val_loss", "val_baseline_loss"}`` on held-out images of ``val_dir``."""
    size = config.data.image_size
    dataset = ImageFolder(image_root(val_dir), eval_transform((size, size)), cache=False)
    images = load_images(dataset, config.data.val_images)
    precision = resolve_precision(config.train.precision)

    def evaluate(model: MaskedAutoencoder) -> dict[str, float]:
        losses = heldout_losses(model, images, config.model.mask_ratio, precision)
        return {f"val_{name}": value for name, value in losses.items()}

    return evaluate


def reconstruction_loss(mask_ratio: float) -> Callable[[torch.nn.Module, Tensor], dict[str, Tensor]]:
    """The engine's loss function: MAE loss on the removed patches of a batch [N, C, H, W]."""

    def loss_fn(model: torch.nn.Module, images: Tensor) -> dict[str, Tensor]:
        loss, _, _ = model(images, mask_ratio=mask_ratio)
        return {"loss": loss}

    return loss_fn


def pretrain(config: MAEPretrainConfig, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
             val_dir: str | os.PathLike | None = None, resume: bool = False) -> dict[str, Any]:
    """Pretrain ``config.model.variant`` on the images below ``data_dir`` into run folder ``out_dir``.

    Returns the engine's final metrics plus images, skipped, lr and the weights path.
    """
    run = Path(out_dir)
    if not resume and (run / LAST_STATE).exists():
        raise ConfigError(f"{run}: holds a run already; pass --resume to continue it, or another --out")
    info = dist_info()
    dataset = ImageFolder(image_root(data_dir), train_transform(config.data), cache=config.data.cache)
    evaluate = make_evaluate(val_dir, config) if val_dir is not None and info.is_main else None
    model = build_model(config)
    train = dataclasses.replace(config.train, lr=config.peak_lr(info.world_size))
    loader = make_loader(dataset, train.batch_size, shuffle=True, seed=train.seed, num_workers=config.data.workers,
                         persistent_workers=config.data.workers > 0)
    if info.is_main:
        save_config(config, run / CONFIG_FILE)
    trainer = Trainer(model, reconstruction_loss(config.model.mask_ratio), loader, train, run, evaluate=evaluate,
                      param_groups=mae_param_groups(model, train.weight_decay, train.betas), resume=resume)
    print0(f"pretraining {config.model.variant} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
           f"parameters) on {len(dataset)} images of {dataset.root} ({len(dataset.skipped)} skipped), "
           f"{trainer.iters_per_epoch} steps/epoch, lr {train.lr:.3g}, {trainer.precision.name}")
    result = trainer.fit()
    weights = run / FINAL_WEIGHTS
    if info.is_main:
        save_mae(unwrap_model(trainer.model), weights)
    return result | {"images": len(dataset), "skipped": len(dataset.skipped), "lr": train.lr, "weights": str(weights)}


def load_trained_mae(weights: str | os.PathLike, variant: str | None = None,
                     norm_pix_loss: bool = False) -> MaskedAutoencoder:
    """An MAE from a run folder or weight file, in eval mode on CPU.

    Without ``variant``: a ``save_mae`` file, or a run folder (its ``mae.safetensors``; for an
    unfinished run its config.yaml with best/last checkpoint). With ``variant``: an official
    or Hugging Face checkpoint file loaded into ``create_mae(variant)`` by ``load_pretrained``;
    ``norm_pix_loss`` says whether it was trained on normalised targets (official ``*_full.pth``).
    """
    path = Path(weights)
    if variant is not None:
        model = create_mae(variant, norm_pix_loss=norm_pix_loss)
        load_pretrained(model, path)
    elif path.is_dir() and not (path / FINAL_WEIGHTS).is_file():
        model = build_model(load_config(MAEPretrainConfig, path / CONFIG_FILE))
        load_weights(model, find_weights(path))
    else:
        file = path / FINAL_WEIGHTS if path.is_dir() else path
        if not file.is_file():
            raise CheckpointError(f"{file}: weights file not found")
        if file.suffix != ".safetensors" or weights_metadata(file).get("format") != FILE_FORMAT:
            raise ValueError(f"{file}: not a deltalearn MAE file; for an official or Hugging Face "
                             "checkpoint name its architecture with --variant (e.g. mae_vit_base_patch16)")
        model = load_mae(file)
    return model.eval()
