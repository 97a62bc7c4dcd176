"""The segmenter: MAE encoder tokens -> patch logits (-> edge refinement) -> a foreground probability per pixel.

The encoder sees every patch (no masking). Its tokens [N, L, D], and with ``head.center``
their differences from the image's mean token, pass a BatchNorm and a small conv on the
patch grid that gives p*p logits per patch, rearranged into pixels (pixel shuffle). With
``head.refine`` a tiny full-resolution conv net that sees those logits and the RGB image
adds a residual, so edges need not follow the patch grid.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...engine.precision import autocast, resolve_precision
from ..data import eval_transform
from ..model import MaskedAutoencoder
from .config import HeadConfig

ENCODER_PREFIXES = ("patch_embed.", "cls_token", "blocks.", "norm.")  # MAE encoder parameters
PREDICT_BATCH = 64  # images per forward pass in predict_foreground


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
