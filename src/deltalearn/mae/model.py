"""ViT masked autoencoder (He et al. 2021, arXiv 2111.06377) built from timm parts.

The encoder sees only the kept patches (plus a class token); the lighter decoder gets
the encoded patches back in image order with a shared mask token in every removed slot,
and predicts each patch's pixels. Module and parameter names follow the official MAE code
(``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks``, ``norm``, ``decoder_embed``,
``mask_token``, ``decoder_pos_embed``, ``decoder_blocks``, ``decoder_norm``,
``decoder_pred``), so official checkpoints load without renaming (see ``weights.py``).

Shapes: N images, L patches per image, D encoder width, D' decoder width,
p patch side, C channels. ``mask: [N, L], 0 is keep, 1 is remove``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import partial

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from deltalearn.config import from_dict, to_dict
from deltalearn.mae.pos_embed import sincos_2d

NORM_PIX_EPS = 1e-6  # variance floor of per-patch normalised targets, as in the paper
TOKEN_INIT_STD = 0.02  # std of the normal init of the class and mask tokens


@dataclass
class MAEConfig:
    """Sizes of one masked autoencoder; the defaults are ViT-B/16 of the paper."""

    img_size: int | tuple[int, int] = 224  # input (height, width) in pixels; an int means square
    patch_size: int = 16  # side of a square patch in pixels
    in_chans: int = 3  # image channels (1: grayscale)
    embed_dim: int = 768  # encoder width D
    depth: int = 12  # encoder transformer blocks
    num_heads: int = 12  # encoder attention heads
    decoder_embed_dim: int = 512  # decoder width D'
    decoder_depth: int = 8  # decoder transformer blocks
    decoder_num_heads: int = 16  # decoder attention heads
    mlp_ratio: float = 4.0  # MLP hidden width / block width, encoder and decoder
    norm_eps: float = 1e-6  # LayerNorm epsilon (official MAE: 1e-6)
    norm_pix_loss: bool = False  # targets normalised per patch (mean 0, var 1); *_full.pth were trained so

    def __post_init__(self) -> None:
        height, width = self.image_hw
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        for name, dim, heads in (("embed_dim", self.embed_dim, self.num_heads),
                                 ("decoder_embed_dim", self.decoder_embed_dim, self.decoder_num_heads)):
            if dim % 4 or dim % heads:
                raise ValueError(f"{name}={dim} must be divisible by 4 (sin-cos) and by its {heads} heads")

    @property
    def image_hw(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        size = self.img_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    @property
    def grid_size(self) -> tuple[int, int]:
        """(rows, cols) of the patch grid."""
        height, width = self.image_hw
        return height // self.patch_size, width // self.patch_size


@dataclass
class PatchErrors:
    """Per-patch reconstruction errors of one masked pass (no reduction over patches)."""

    errors: Tensor  # [N, L] mean squared error over each patch's p*p*C values (targets as in the loss)
    pred: Tensor  # [N, L, p*p*C] predicted pixels of every patch
    mask: Tensor  # [N, L], 0 is keep, 1 is remove


def patchify(imgs: Tensor, patch_size: int) -> Tensor:
    """Images [N, C, H, W] -> patches [N, L, p*p*C], values ordered (p, q, c) as in official MAE."""
    n, c, h, w = imgs.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
    x = imgs.reshape(n, c, h // p, p, w // p, p)  # [N, C, rows, p, cols, q]
    x = torch.einsum("nchpwq->nhwpqc", x)  # [N, rows, cols, p, q, C]
    return x.reshape(n, (h // p) * (w // p), p * p * c)  # [N, L, p*p*C]


def unpatchify(x: Tensor, patch_size: int, grid_size: tuple[int, int]) -> Tensor:
    """Patches [N, L, p*p*C] -> images [N, C, H, W]; inverse of ``patchify``."""
    n, length, values = x.shape
    rows, cols = grid_size
    p = patch_size
    c = values // (p * p)
    if length != rows * cols or c * p * p != values:
        raise ValueError(f"patches {tuple(x.shape)} do not fit a {rows}x{cols} grid of {p}px patches")
    x = x.reshape(n, rows, cols, p, p, c)  # [N, rows, cols, p, q, C]
    x = torch.einsum("nhwpqc->nchpwq", x)  # [N, C, rows, p, cols, q]
    return x.reshape(n, c, rows * p, cols * p)  # [N, C, H, W]


def _keep_first(x: Tensor, ids_shuffle: Tensor, len_keep: int) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the first ``len_keep`` tokens of each row's shuffle order."""
    n, length, dim = x.shape
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # [N, L], inverse permutation
    ids_keep = ids_shuffle[:, :len_keep]  # [N, L_keep]
    kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))  # [N, L_keep, D]
    mask = torch.ones(n, length, device=x.device)  # [N, L] in shuffle order
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # [N, L], 0 is keep, 1 is remove
    return kept, mask, ids_restore


def random_masking(
    x: Tensor, mask_ratio: float, noise: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample masking by sorting noise; the patches with the lowest noise are kept.

    x: [N, L, D] -> (kept [N, L_keep, D] with L_keep = int(L * (1 - mask_ratio)),
    mask [N, L] (0 keep, 1 remove), ids_restore [N, L]).
    """
    n, length, _ = x.shape
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    if noise is None:
        noise = torch.rand(n, length, device=x.device)  # [N, L] in [0, 1)
    elif noise.shape != (n, length):
        raise ValueError(f"noise must have shape {(n, length)}, got {tuple(noise.shape)}")
    ids_shuffle = torch.argsort(noise.to(x.device), dim=1)  # [N, L], ascending: small is keep
    return _keep_first(x, ids_shuffle, int(length * (1 - mask_ratio)))


def masking_from_mask(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Masking with a chosen mask [N, L] (bool or 0/1, 1 is remove); same outputs as ``random_masking``.

    Every row must remove the same number of patches (the encoder batch is rectangular).
    Kept patches stay in image order.
    """
    n, length, _ = x.shape
    if mask.shape != (n, length):
        raise ValueError(f"mask must have shape {(n, length)}, got {tuple(mask.shape)}")
    if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask values must be 0 (keep) or 1 (remove)")
    removed = mask.to(x.device).bool()  # [N, L]
    counts = removed.sum(dim=1)  # [N]
    if (counts != counts[0]).any():
        raise ValueError(
            "every row of mask must remove the same number of patches, got counts "
            f"{sorted(set(counts.tolist()))}"
        )
    ids_shuffle = torch.argsort(removed.to(torch.uint8), dim=1, stable=True)  # [N, L], kept first
    return _keep_first(x, ids_shuffle, length - int(counts[0]))


class MaskedAutoencoder(nn.Module):
    """MAE with a ViT encoder and decoder (timm ``PatchEmbed`` and ``Block``)."""

    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        c = self.config = config
        norm_layer = partial(nn.LayerNorm, eps=c.norm_eps)
        self.grid_size = c.grid_size  # (rows, cols)
        # encoder
        self.patch_embed = PatchEmbed(c.image_hw, c.patch_size, c.in_chans, c.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.register_buffer("pos_embed", sincos_2d(c.embed_dim, self.grid_size)[None])  # [1, 1+L, D], fixed
        self.blocks = nn.ModuleList(
            Block(c.embed_dim, c.num_heads, c.mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(c.depth)
        )
        self.norm = norm_layer(c.embed_dim)
        # decoder
        self.decoder_embed = nn.Linear(c.embed_dim, c.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_embed_dim))
        self.register_buffer(
            "decoder_pos_embed", sincos_2d(c.decoder_embed_dim, self.grid_size)[None]
        )  # [1, 1+L, D'], fixed
        self.decoder_blocks = nn.ModuleList(
            Block(c.decoder_embed_dim, c.decoder_num_heads, c.mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(c.decoder_depth)
        )
        self.decoder_norm = norm_layer(c.decoder_embed_dim)
        self.decoder_pred = nn.Linear(c.decoder_embed_dim, c.patch_size**2 * c.in_chans)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The paper's init: xavier-uniform Linears (and patch projection), normal tokens, unit LayerNorms."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        proj = self.patch_embed.proj.weight  # [D, C, p, p], initialised as a Linear [D, C*p*p]
        nn.init.xavier_uniform_(proj.view(proj.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.cls_token, std=TOKEN_INIT_STD)
        nn.init.normal_(self.mask_token, std=TOKEN_INIT_STD)

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    def patchify(self, imgs: Tensor) -> Tensor:
        """[N, C, H, W] -> [N, L, p*p*C]."""
        return patchify(imgs, self.config.patch_size)

    def unpatchify(self, x: Tensor) -> Tensor:
        """[N, L, p*p*C] -> [N, C, H, W]."""
        return unpatchify(x, self.config.patch_size, self.grid_size)

    def forward_encoder(
        self, imgs: Tensor, mask_ratio: float = 0.75, noise: Tensor | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """imgs [N, C, H, W] -> (latent [N, 1+L_keep, D], mask [N, L], ids_restore [N, L]).

        An explicit ``mask`` (1 is remove) overrides ``mask_ratio`` and ``noise``.
        """
        x = self.patch_embed(imgs)  # [N, L, D]
        x = x + self.pos_embed[:, 1:, :]
        if mask is not None:
            x, mask, ids_restore = masking_from_mask(x, mask)  # x: [N, L_keep, D]
        else:
            x, mask, ids_restore = random_masking(x, mask_ratio, noise)  # x: [N, L_keep, D]
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)  # [N, 1, D]
        x = torch.cat([cls.to(x.dtype), x], dim=1)  # [N, 1+L_keep, D]
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """latent [N, 1+L_keep, D], ids_restore [N, L] -> pred [N, L, p*p*C]."""
        x = self.decoder_embed(latent)  # [N, 1+L_keep, D']
        n, length = ids_restore.shape
        mask_tokens = self.mask_token.expand(n, length + 1 - x.shape[1], -1)  # [N, L-L_keep, D']
        patches = torch.cat([x[:, 1:, :], mask_tokens.to(x.dtype)], dim=1)  # [N, L, D'], shuffle order
        index = ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2])  # [N, L, D']
        patches = torch.gather(patches, 1, index)  # [N, L, D'], image order
        x = torch.cat([x[:, :1, :], patches], dim=1)  # [N, 1+L, D']
        x = x + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_pred(self.decoder_norm(x))  # [N, 1+L, p*p*C]
        return x[:, 1:, :]  # [N, L, p*p*C], class token dropped

    def patch_loss(self, imgs: Tensor, pred: Tensor) -> Tensor:
        """Mean squared error of every patch: imgs [N, C, H, W], pred [N, L, p*p*C] -> [N, L]."""
        target = self.patchify(imgs).float()  # [N, L, p*p*C]
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + NORM_PIX_EPS) ** 0.5
        return ((pred.float() - target) ** 2).mean(dim=-1)  # [N, L]

    def forward_loss(self, imgs: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """Mean of ``patch_loss`` over the removed patches only (0 when none is removed)."""
        return masked_mean(self.patch_loss(imgs, pred), mask)

    def patch_errors(
        self, imgs: Tensor, mask: Tensor | None = None, noise: Tensor | None = None, mask_ratio: float = 0.75
    ) -> PatchErrors:
        """Per-patch errors of one masked reconstruction; wrap in ``torch.no_grad()`` for analysis."""
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise, mask)
        pred = self.forward_decoder(latent, ids_restore)
        return PatchErrors(errors=self.patch_loss(imgs, pred), pred=pred, mask=mask)

    def forward(
        self, imgs: Tensor, mask_ratio: float = 0.75, noise: Tensor | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """imgs [N, C, H, W] -> (loss [], pred [N, L, p*p*C], mask [N, L]), like the official code."""
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise, mask)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of values [N, L] where mask [N, L] is 1."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


# Named variants. Counts are parameters (encoder + decoder), checked by tests/test_mae_model.py;
# the fixed pos embeds are buffers, not counted (the paper's code counts them: ViT-B 111.9 M).
MAE_VARIANTS: dict[str, MAEConfig] = {
    # ViT-B/16 of the paper, 224 px: encoder 85.6 M + decoder 26.0 M = 111.7 M
    "mae_vit_base_patch16": MAEConfig(),
    # ViT-L/16 of the paper, 224 px: encoder 303.1 M + decoder 26.1 M = 329.2 M
    "mae_vit_large_patch16": MAEConfig(embed_dim=1024, depth=24, num_heads=16),
    # ViT-H/14 of the paper, 224 px: encoder 630.4 M + decoder 26.2 M = 656.6 M
    "mae_vit_huge_patch14": MAEConfig(patch_size=14, embed_dim=1280, depth=32, num_heads=16),
    # ViT-Ti/16 encoder (DeiT-tiny sizes) with a 4-block 256-wide decoder, 224 px: 5.5 M + 3.4 M = 8.9 M
    "mae_vit_tiny_patch16": MAEConfig(
        embed_dim=192, depth=12, num_heads=3, decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8
    ),
    # ViT-S/16 encoder (DeiT-small sizes) with the same 4-block 256-wide decoder, 224 px: 21.6 M + 3.5 M = 25.0 M
    "mae_vit_small_patch16": MAEConfig(
        embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8
    ),
    # CPU pretraining, 64 px, 8 px patches (64 patches, 16 seen), 4x192 encoder, 2x128 decoder:
    # 1.8 M + 0.4 M = 2.3 M parameters
    "mae_vit_cpu_patch8": MAEConfig(
        img_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=3,
        decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4,
    ),
}


def mae_config(name: str, **overrides: object) -> MAEConfig:
    """The config of variant ``name`` with ``overrides`` (e.g. ``in_chans=1``, ``img_size=96``)."""
    if name not in MAE_VARIANTS:
        close = difflib.get_close_matches(name, list(MAE_VARIANTS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"unknown MAE variant '{name}'; {hint}known: {', '.join(MAE_VARIANTS)}")
    return from_dict(MAEConfig, {**to_dict(MAE_VARIANTS[name]), **overrides})


def create_mae(name: str, **overrides: object) -> MaskedAutoencoder:
    """Build a freshly initialised variant, e.g. ``create_mae("mae_vit_cpu_patch8", in_chans=1)``."""
    return MaskedAutoencoder(mae_config(name, **overrides))
