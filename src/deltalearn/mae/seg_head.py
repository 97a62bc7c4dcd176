"""Binary segmentation head on the MAE encoder: a foreground probability for every pixel.

The encoder sees every patch (no masking). Its tokens [N, L, D], and with ``head.center``
their differences from the image's mean token, pass a BatchNorm and a small conv on the
patch grid that gives p*p logits per patch, rearranged into pixels (pixel shuffle). With
``head.refine`` a tiny full-resolution conv net that sees those logits and the RGB image
adds a residual, so edges need not follow the patch grid. The encoder is frozen unless
``train.finetune_encoder``, which trains it at ``lr * encoder_lr_scale``.

Training pairs images with masks by file name: ground truth (``DATA/masks``) or
pseudo-labels of the same stems from another folder, e.g. the Louvain masks of
``mae segment`` (self-training). Mask pixels >= 128 are foreground. An image whose mask is
missing, unreadable or of another size is skipped, warned about and counted.

``seg_head.safetensors`` holds the head's weights and, in its metadata, the head and MAE
configs and a fingerprint of the encoder; a fine-tuned encoder's weights are stored too,
a frozen one is given back to ``load_seg_head`` and checked against the fingerprint.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from ..config import ConfigError, from_dict, save_config, to_dict
from ..data.errors import DataError, DataWarning, ImageDecodeError
from ..data.images import load_rgb
from ..engine.checkpoint import LAST_STATE, CheckpointError, read_weights, save_weights, weights_metadata
from ..engine.config import TrainConfig
from ..engine.distributed import make_loader, unwrap_model
from ..engine.precision import autocast, resolve_precision
from ..engine.trainer import Trainer, default_param_groups, seed_everything
from .data import eval_transform, find_images, image_root
from .model import MAEConfig, MaskedAutoencoder

HEAD_FILE = "seg_head.safetensors"
CONFIG_FILE = "config.yaml"
FILE_FORMAT = "deltalearn.mae_seg_head"  # safetensors metadata "format" of seg_head files
FOREGROUND_THRESHOLD = 128  # mask pixels >= this are foreground (masks are 0/255 PNGs)
ENCODER_PREFIXES = ("patch_embed.", "cls_token", "blocks.", "norm.")  # MAE encoder parameters
DICE_SMOOTHING = 1.0  # added to Dice numerator and denominator: an empty mask predicted empty scores 1
PREDICT_BATCH = 64  # images per forward pass in predict_foreground


@dataclass
class HeadConfig:
    hidden: int = 64  # channels of a 3x3 conv (+ GELU) on the patch grid; 0: BatchNorm + linear only
    center: bool = True  # also feed each token minus its image's mean token
    refine: bool = True  # add a full-resolution conv refinement that sees the RGB image
    refine_channels: int = 16  # width of the refinement's 3x3 convs


@dataclass
class SegDataConfig:
    max_images: int = 0  # train on the first N image/mask pairs (sorted by path); 0: all
    flip: float = 0.5  # probability of a horizontal flip of image and mask


@dataclass
class SegTrainConfig(TrainConfig):
    epochs: int = 20  # passes over the pairs
    batch_size: int = 64  # images per step
    lr: float = 1e-2  # peak learning rate of the head
    weight_decay: float = 0.01  # AdamW, not on norms and biases
    warmup_epochs: float = 0.5  # linear warm-up
    val_every: int = 0  # no evaluation while training
    finetune_encoder: bool = False  # also train the MAE encoder; false: frozen
    encoder_lr_scale: float = 0.1  # encoder lr = lr * this, when fine-tuned
    dice_weight: float = 1.0  # loss = BCE + dice_weight * soft Dice loss (BCE alone: IoU at 0.5 lags)


@dataclass
class SegHeadConfig:
    head: HeadConfig = field(default_factory=HeadConfig)
    data: SegDataConfig = field(default_factory=SegDataConfig)
    train: SegTrainConfig = field(default_factory=SegTrainConfig)

    def __post_init__(self) -> None:
        if self.train.encoder_lr_scale <= 0:
            raise ConfigError(f"train.encoder_lr_scale must be above 0, got {self.train.encoder_lr_scale}")
        if self.head.hidden < 0 or self.head.refine_channels < 1:
            raise ConfigError("head.hidden must be >= 0 and head.refine_channels >= 1")


# ---- model ----------------------------------------------------------------------------------


class PatchLogits(nn.Module):
    """Encoder tokens [N, L, D] of a (rows, cols) grid -> logits [N, 1, rows*p, cols*p].

    With ``center`` each token also enters minus its image's mean token: how a patch
    differs from the rest of its image, which is what tells an object from its background.
    The features are standardised per channel by a BatchNorm without affine, as in the MAE
    paper's linear probe: tokens share a large per-channel offset and differ from patch to
    patch by a few percent of it, which a LayerNorm leaves as it is and which trains slowly.
    """

    def __init__(self, dim: int, patch_size: int, grid_size: tuple[int, int], hidden: int,
                 center: bool = False) -> None:
        super().__init__()
        self.patch_size, self.grid_size, self.center = patch_size, grid_size, center
        features = 2 * dim if center else dim
        self.norm = nn.BatchNorm2d(features, affine=False)
        out = patch_size * patch_size  # one logit per pixel of the patch
        layers = [nn.Conv2d(features, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, out, 1)] if hidden \
            else [nn.Conv2d(features, out, 1)]
        self.proj = nn.Sequential(*layers)

    def forward(self, tokens: Tensor) -> Tensor:
        if self.center:
            tokens = torch.cat([tokens, tokens - tokens.mean(dim=1, keepdim=True)], dim=2)  # [N, L, 2D]
        rows, cols = self.grid_size
        x = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], rows, cols)  # [N, D, rows, cols]
        x = self.proj(self.norm(x))  # [N, p*p, rows, cols]
        return F.pixel_shuffle(x, self.patch_size)  # [N, 1, H, W]


class EdgeRefiner(nn.Module):
    """logits [N, 1, H, W] + images [N, C, H, W] -> logits + residual of three 3x3 convs."""

    def __init__(self, in_chans: int, channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1 + in_chans, channels, 3, padding=1), nn.GELU(),
                                 nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
                                 nn.Conv2d(channels, 1, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity: the patch head's logits
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, logits: Tensor, images: Tensor) -> Tensor:
        return logits + self.net(torch.cat([logits, images.to(logits.dtype)], dim=1))


class MAESegmenter(nn.Module):
    """MAE encoder -> PatchLogits (-> EdgeRefiner): normalised images [N, C, H, W] -> {"logits": [N, 1, H, W]}.

    The MAE's decoder is carried along unused. ``finetune_encoder`` False keeps the encoder
    in eval mode when the module is put in training mode.
    """

    def __init__(self, mae: MaskedAutoencoder, head: PatchLogits, refiner: EdgeRefiner | None = None,
                 finetune_encoder: bool = False) -> None:
        super().__init__()
        self.mae, self.head, self.refiner = mae, head, refiner
        self.finetune_encoder = finetune_encoder

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.mae.config.image_hw

    def no_weight_decay(self) -> tuple[str, ...]:
        return ("mae.cls_token",)

    def train(self, mode: bool = True) -> MAESegmenter:
        super().train(mode)
        if not self.finetune_encoder:
            self.mae.eval()
        return self

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        keep_all = torch.zeros(images.shape[0], self.mae.num_patches, device=images.device)  # [N, L], 0 is keep
        latent, _, _ = self.mae.forward_encoder(images, mask=keep_all)  # [N, 1+L, D]
        logits = self.head(latent[:, 1:, :])  # class token dropped
        if self.refiner is not None:
            logits = self.refiner(logits, images)
        return {"logits": logits}


def build_segmenter(mae: MaskedAutoencoder, config: HeadConfig, finetune_encoder: bool = False) -> MAESegmenter:
    """A fresh head (and refiner) on ``mae``'s encoder; ``mae`` itself is used, not copied."""
    c = mae.config
    head = PatchLogits(c.embed_dim, c.patch_size, c.grid_size, config.hidden, config.center)
    refiner = EdgeRefiner(c.in_chans, config.refine_channels) if config.refine else None
    return MAESegmenter(mae, head, refiner, finetune_encoder)


def encoder_state(mae: MaskedAutoencoder) -> dict[str, Tensor]:
    """The encoder's parameters (fixed sin-cos position embeddings and decoder left out)."""
    return {k: v for k, v in mae.state_dict().items() if k.startswith(ENCODER_PREFIXES)}


def encoder_fingerprint(mae: MaskedAutoencoder) -> str:
    """SHA-256 of the encoder's weights (names and float32 bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder_state(mae).items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# ---- loss -----------------------------------------------------------------------------------


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


# ---- data -----------------------------------------------------------------------------------


def mask_root(masks_dir: str | os.PathLike) -> Path:
    """``masks_dir/masks`` when it exists (a ``mae synth`` or ``mae segment`` folder), else ``masks_dir``."""
    masks_dir = Path(masks_dir)
    return masks_dir / "masks" if (masks_dir / "masks").is_dir() else masks_dir


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """[H, W] bool, pixels >= FOREGROUND_THRESHOLD in any channel; ImageDecodeError for a bad file."""
    return load_rgb(path).max(axis=2) >= FOREGROUND_THRESHOLD


def pair_masks(images_dir: str | os.PathLike, masks_dir: str | os.PathLike) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(image, mask) pairs by relative path without suffix, else by unique stem; and images without a mask."""
    root, masks = image_root(images_dir), mask_root(masks_dir)
    if not masks.is_dir():
        raise DataError(masks, "mask folder not found")
    mask_files = find_images(masks)
    by_path = {p.relative_to(masks).with_suffix(""): p for p in mask_files}
    stems: dict[str, list[Path]] = {}
    for p in mask_files:
        stems.setdefault(p.stem, []).append(p)
    inside = masks.resolve()
    pairs, missing = [], []
    for image in find_images(root):
        if inside in image.resolve().parents:
            continue  # a mask folder below the image folder
        mask = by_path.get(image.relative_to(root).with_suffix(""))
        if mask is None and len(stems.get(image.stem, [])) == 1:
            mask = stems[image.stem][0]
        if mask is None:
            missing.append(image)
        else:
            pairs.append((image, mask))
    if not pairs:
        raise DataError(masks, f"no mask matches an image of {root} (masks pair with images by file name)")
    return pairs, missing


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


# ---- training -------------------------------------------------------------------------------


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


# ---- weight files ---------------------------------------------------------------------------


def save_seg_head(model: MAESegmenter, path: str | os.PathLike, config: SegHeadConfig,
                  mae_source: str | None = None) -> None:
    """Head (and refiner) weights, plus the encoder's when fine-tuned; configs in the metadata."""
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("mae.")}
    if model.finetune_encoder:
        state |= {f"mae.{k}": v for k, v in encoder_state(model.mae).items()}
    metadata = {
        "format": FILE_FORMAT,
        "config": json.dumps(to_dict(config)),
        "mae_config": json.dumps(to_dict(model.mae.config)),
        "encoder": "included" if model.finetune_encoder else "frozen",
        "encoder_sha256": encoder_fingerprint(model.mae),
        "mae_source": mae_source or "",
    }
    save_weights(state, path, metadata=metadata)


def load_seg_head(path: str | os.PathLike, mae: MaskedAutoencoder | None = None) -> MAESegmenter:
    """The segmenter saved in ``path`` (a file or run folder), in eval mode.

    A head trained on a frozen encoder needs ``mae``, the MAE it was trained on (checked by
    config and fingerprint; it is used, not copied). A fine-tuned file holds its encoder and
    ignores ``mae``.
    """
    path = Path(path)
    path = path / HEAD_FILE if path.is_dir() else path
    meta = weights_metadata(path)
    if meta.get("format") != FILE_FORMAT:
        raise CheckpointError(f"{path}: not a deltalearn segmentation head file (written by mae train-head)")
    config = from_dict(SegHeadConfig, json.loads(meta["config"]))
    mae_config = from_dict(MAEConfig, json.loads(meta["mae_config"]))
    tensors = read_weights(path)
    encoder = {k.removeprefix("mae."): v for k, v in tensors.items() if k.startswith("mae.")}
    if encoder:
        mae = MaskedAutoencoder(mae_config)
        missing = set(encoder_state(mae)) - set(encoder)
        if missing:
            raise CheckpointError(f"{path}: encoder weights incomplete, missing {sorted(missing)[:3]}")
        mae.load_state_dict(encoder, strict=False)
    elif mae is None:
        source = f" ({meta['mae_source']})" if meta.get("mae_source") else ""
        raise CheckpointError(f"{path}: a head trained on a frozen MAE encoder; pass the MAE it was trained on{source}")
    elif to_dict(mae.config) != to_dict(mae_config):
        raise CheckpointError(f"{path}: the head was trained on another MAE architecture ({meta['mae_config']})")
    elif encoder_fingerprint(mae) != meta.get("encoder_sha256"):
        raise CheckpointError(f"{path}: the MAE's encoder weights differ from those the head was trained on"
                              f"{' (' + meta['mae_source'] + ')' if meta.get('mae_source') else ''}")
    model = build_segmenter(mae, config.head, finetune_encoder=bool(encoder))
    own = {k for k in model.state_dict() if not k.startswith("mae.")}
    head = {k: v for k, v in tensors.items() if not k.startswith("mae.")}
    if set(head) != own:
        raise CheckpointError(f"{path}: head weights do not fit its config (keys {sorted(set(head) ^ own)[:3]})")
    model.load_state_dict(head, strict=False)
    return model.eval()


# ---- inference ------------------------------------------------------------------------------


def _as_chw(image: np.ndarray | Tensor) -> Tensor:
    """uint8 [H, W, 3] / [H, W] array or [3, H, W] / [1, H, W] / [H, W] tensor -> uint8 [3, H, W]."""
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
        image = image.permute(2, 0, 1) if image.ndim == 3 else image
    image = image[None] if image.ndim == 2 else image
    if image.ndim != 3 or image.shape[0] not in (1, 3) or image.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 image [H, W, 3] (array) or [3, H, W] (tensor), got "
                         f"{tuple(image.shape)} {image.dtype}")
    return image.expand(3, -1, -1)


def predict_foreground(model: MAESegmenter, images: list[np.ndarray | Tensor] | Tensor,
                       batch_size: int = PREDICT_BATCH, precision: str = "auto") -> list[np.ndarray]:
    """Foreground probabilities float32 [H, W] per image, at each image's own size.

    Images (uint8, any size and aspect) are resized to the MAE's input size; the logits are
    resized back bilinearly, then squashed.
    """
    device = next(model.parameters()).device
    prec = resolve_precision(precision, device)
    transform = eval_transform(model.image_hw)
    images = [_as_chw(image) for image in images]
    probs = []
    model.eval()
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = torch.stack([transform(image) for image in chunk]).to(device)
        with torch.no_grad(), autocast(prec):
            logits = model(batch)["logits"].float()  # [n, 1, H', W']
        for image, logit in zip(chunk, logits):
            full = F.interpolate(logit[None], size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
            probs.append(torch.sigmoid(full)[0, 0].cpu().numpy())
    return probs
