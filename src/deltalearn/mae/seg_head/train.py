"""Training a segmentation head: loss, image/mask pairs, the run.

Training pairs images with masks by file name (``data.io.pair_masks``): ground truth
(``DATA/masks``) or pseudo-labels of the same stems from another folder, e.g. the Louvain
masks of ``mae segment`` (self-training). Masks are read by ``data.io.read_mask``. An image
whose mask is missing, unreadable or of another size is skipped, warned about and counted.
The encoder is frozen unless ``train.finetune_encoder``, which trains it at
``lr * encoder_lr_scale``.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from ...config import ConfigError, save_config
from ...data.errors import DataError, DataWarning, ImageDecodeError
from ...data.io import load_rgb, mask_root, pair_masks, read_mask
from ...engine.checkpoint import LAST_STATE
from ...engine.distributed import make_loader, unwrap_model
from ...engine.trainer import Trainer, default_param_groups, seed_everything
from ..data import eval_transform
from ..model import MaskedAutoencoder
from .config import SegHeadConfig, SegTrainConfig
from .model import ENCODER_PREFIXES, MAESegmenter, build_segmenter
from .weights import HEAD_FILE, save_seg_head

CONFIG_FILE = "config.yaml"
DICE_SMOOTHING = 1.0  # added to Dice numerator and denominator: an empty mask predicted empty scores 1


def soft_dice_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """1 - soft Dice of sigmoid(logits) and targets in [0, 1], per image, averaged: [N, 1, H, W] -> []."""
    probs = torch.sigmoid(logits.float()).flatten(1)
    targets = targets.float().flatten(1)
    overlap = (probs * targets).sum(1)
    dice = (2 * overlap + DICE_SMOOTHING) / (probs.sum(1) + targets.sum(1) + DICE_SMOOTHING)
    return (1 - dice).mean()


def segmentation_loss(dice_weight: float = 1.0) -> Callable[[nn.Module, tuple[Tensor, Tensor]], dict[str, Tensor]]:
    """The engine's loss function over batches (images [N, C, H, W], targets [N, 1, H, W] in [0, 1])."""

    def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        images, targets = batch
        logits = model(images)["logits"].float()
        terms = {"bce": F.binary_cross_entropy_with_logits(logits, targets)}
        if dice_weight > 0:
            terms["dice"] = soft_dice_loss(logits, targets)
        return {"loss": terms["bce"] + dice_weight * terms.get("dice", 0.0), **terms}

    return loss_fn


def load_pairs(pairs: list[tuple[Path, Path]], image_hw: tuple[int, int]) -> tuple[Tensor, Tensor, dict[str, int]]:
    """Decode pairs resized to ``image_hw``: (images uint8 [N, 3, H, W], masks uint8 [N, 1, H, W], skip counts).

    Masks are resized bilinearly into soft targets (0..255). A pair with an unreadable image
    or mask, or a mask of another size than its image, is skipped with a warning.
    """
    images, masks = [], []
    skipped = {"bad_image": 0, "bad_mask": 0, "size_mismatch": 0}
    for image_path, mask_path in tqdm(pairs, desc="reading pairs", unit="img", leave=False):
        try:
            pixels, mask = load_rgb(image_path), read_mask(mask_path)
        except ImageDecodeError as error:
            skipped["bad_image" if error.path == os.fspath(image_path) else "bad_mask"] += 1
            warnings.warn(f"skipping image {image_path.name}: {error}", DataWarning, stacklevel=2)
            continue
        if mask.shape != pixels.shape[:2]:
            skipped["size_mismatch"] += 1
            warnings.warn(f"skipping image: {mask_path}: mask is {mask.shape[0]}x{mask.shape[1]} px but its image "
                          f"{image_path} is {pixels.shape[0]}x{pixels.shape[1]} px", DataWarning, stacklevel=2)
            continue
        image = TF.resize(torch.from_numpy(pixels).permute(2, 0, 1), list(image_hw), antialias=True)
        target = TF.resize(torch.from_numpy(mask)[None].float(), list(image_hw), antialias=True)
        images.append(image)
        masks.append((target * 255).round().to(torch.uint8))
    if not images:
        raise DataError(pairs[0][1].parent, f"none of the {len(pairs)} image/mask pairs is usable (see warnings)")
    return torch.stack(images), torch.stack(masks), skipped


class PairDataset(torch.utils.data.Dataset):
    """uint8 images [N, 3, H, W] and masks [N, 1, H, W] -> (normalised image, target in [0, 1]), flipped together."""

    def __init__(self, images: Tensor, masks: Tensor, flip: float = 0.5) -> None:
        self.images, self.masks, self.flip = images, masks, flip
        self.transform = eval_transform(tuple(images.shape[-2:]))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask = self.images[index], self.masks[index]
        if self.flip > 0 and torch.rand(()) < self.flip:
            image, mask = image.flip(-1), mask.flip(-1)
        return self.transform(image), mask.float() / 255


def seg_param_groups(model: MAESegmenter, train: SegTrainConfig) -> list[dict[str, Any]]:
    """AdamW groups of the trainable parameters; encoder ones (when fine-tuned) at ``lr * encoder_lr_scale``."""
    encoder = {id(p) for p in model.mae.parameters()}
    groups = []
    for group in default_param_groups(model, train.weight_decay):
        groups.append(group | {"params": [p for p in group["params"] if id(p) not in encoder]})
        groups.append(group | {"params": [p for p in group["params"] if id(p) in encoder],
                               "lr": train.lr * train.encoder_lr_scale})
    return [g for g in groups if g["params"]]


def trainable_segmenter(mae: MaskedAutoencoder, config: SegHeadConfig) -> MAESegmenter:
    """A fresh head on a copy of ``mae``, whose encoder requires grad only when fine-tuned (decoder never)."""
    mae = copy.deepcopy(mae).requires_grad_(False)
    if config.train.finetune_encoder:
        for name, param in mae.named_parameters():
            param.requires_grad_(name.startswith(ENCODER_PREFIXES))
    return build_segmenter(mae, config.head, config.train.finetune_encoder)


def train_seg_head(mae: MaskedAutoencoder, images_dir: str | os.PathLike, masks_dir: str | os.PathLike,
                   out_dir: str | os.PathLike, config: SegHeadConfig | None = None,
                   mae_source: str | None = None) -> dict[str, Any]:
    """Train a head on a copy of ``mae`` from the masks in ``masks_dir``; write run folder ``out_dir``.

    ``mae_source`` (where the MAE came from) is recorded in the file's metadata. Returns the
    engine's final metrics plus images, skipped (counts by reason) and the weights path.
    """
    config = config or SegHeadConfig()
    run = Path(out_dir)
    if (run / HEAD_FILE).exists() or (run / LAST_STATE).exists():
        raise ConfigError(f"{run}: holds a run already; choose another --out")
    pairs, missing = pair_masks(images_dir, masks_dir)
    if missing:
        names = ", ".join(p.name for p in missing[:3])
        warnings.warn(f"skipping {len(missing)} images without a mask in {mask_root(masks_dir)} (first: {names})",
                      DataWarning, stacklevel=2)
    if config.data.max_images > 0:
        pairs = pairs[:config.data.max_images]
    images, masks, skipped = load_pairs(pairs, mae.config.image_hw)
    skipped["missing_mask"] = len(missing)
    seed_everything(config.train.seed)
    model = trainable_segmenter(mae, config)
    loader = make_loader(PairDataset(images, masks, config.data.flip), config.train.batch_size, seed=config.train.seed)
    save_config(config, run / CONFIG_FILE)
    trainer = Trainer(model, segmentation_loss(config.train.dice_weight), loader, config.train, run,
                      param_groups=seg_param_groups(model, config.train))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"training a segmentation head ({trainable / 1e6:.2f} M trainable parameters, encoder "
          f"{'fine-tuned' if config.train.finetune_encoder else 'frozen'}) on {len(images)} pairs "
          f"({sum(skipped.values())} images skipped), {trainer.iters_per_epoch} steps/epoch, {trainer.precision.name}")
    result = trainer.fit()
    weights = run / HEAD_FILE
    save_seg_head(unwrap_model(trainer.model), weights, config, mae_source)
    return result | {"images": len(images), "skipped": skipped, "weights": str(weights)}
