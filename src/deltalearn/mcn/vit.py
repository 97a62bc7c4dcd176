"""A plain ViT backbone for the MCN, after ViTDet (Li, Mao, Girshick and He, "Exploring Plain
Vision Transformer Backbones for Object Detection", ECCV 2022).

The ViT keeps its single scale: its last block's tokens, reshaped to [B, D, H / p, W / p],
become a pyramid at strides 4, 8, 16 and 32 by 2x2 transposed convolutions (finer) and 2x2
max pooling (coarser), as ViTDet's simple feature pyramid does, and the MCN's usual neck
fuses that pyramid to stride 4. ViTDet follows each level with a 1x1 and a 3x3 conv; here the
neck's own 1x1 projections play that part, which keeps the ViT path as cheap as the CNNs'.

The ViT is timm's ``VisionTransformer`` with the official MAE's names (``patch_embed``,
``cls_token``, ``pos_embed``, ``blocks``, ``norm``), so an MAE encoder loads as it is. Its
position embeddings are stored for the pretraining grid and resampled (bicubic) to the
grid of each input, as ViTDet does; they are learned during fine-tuning.

``model.backbone: mae:RUN_OR_FILE`` builds the ViT from the MAE's encoder (width, depth,
heads and patch size from the file's shapes) with its weights; ``model.backbone: vit``
builds it from ``model.vit`` with random weights: the same network without the pretraining.
"""

from __future__ import annotations

import math
from dataclasses import fields
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d, resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..config import ConfigError
from ..engine.checkpoint import CheckpointError
from ..vit.checkpoint import EncoderSpec, StateDict, read_mae_encoder
from .config import ModelConfig, ViTConfig

MAE_PREFIX = "mae:"  # model.backbone: mae:RUN_OR_FILE
VIT_BACKBONE = "vit"  # model.backbone: vit (random weights, model.vit)
PYRAMID_REDUCTIONS = (4, 8, 16, 32)  # the strides the neck expects, finest first
VIT_DEFAULTS = ViTConfig(embed_dim=384, depth=12, num_heads=6, patch_size=16, mlp_ratio=4.0)  # ViT-S/16
DEFAULT_PRETRAIN_SIDE = 224  # pixels of the default position-embedding grid
_SPEC_FIELDS = {"embed_dim": "width", "depth": "depth", "num_heads": "heads", "patch_size": "patch size",
                "mlp_ratio": "MLP ratio"}


def is_vit_backbone(name: str) -> bool:
    return name == VIT_BACKBONE or name.startswith(MAE_PREFIX)


class SimpleFeaturePyramid(nn.Module):
    """[B, D, H / p, W / p] -> one map per stride of ``reductions`` (finest first).

    A level finer than p by 2^k takes k transposed 2x2 convs of stride 2, halving the width
    each time (LayerNorm + GELU between two, as ViTDet); the level at p is the map itself;
    a coarser one is max-pooled. p and the strides must be powers of two.
    """

    def __init__(self, embed_dim: int, patch_size: int, reductions: tuple[int, ...] = PYRAMID_REDUCTIONS) -> None:
        super().__init__()
        if patch_size & (patch_size - 1) or any(r & (r - 1) for r in reductions):
            raise ConfigError(f"model.vit.patch_size {patch_size}: the simple feature pyramid needs a power of two "
                              f"to reach strides {list(reductions)}")
        self.levels = nn.ModuleList()
        self.channels: list[int] = []
        for reduction in reductions:
            if reduction < patch_size:
                steps = int(math.log2(patch_size // reduction))
                layers: list[nn.Module] = []
                width = embed_dim
                for step in range(steps):
                    if step:
                        layers += [LayerNorm2d(width), nn.GELU()]
                    layers.append(nn.ConvTranspose2d(width, width // 2, kernel_size=2, stride=2))
                    width //= 2
                self.levels.append(nn.Sequential(*layers))
                self.channels.append(width)
            elif reduction == patch_size:
                self.levels.append(nn.Identity())
                self.channels.append(embed_dim)
            else:
                factor = reduction // patch_size
                self.levels.append(nn.MaxPool2d(kernel_size=factor, stride=factor))
                self.channels.append(embed_dim)
        self.reductions = list(reductions)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [level(x) for level in self.levels]


class ViTBackbone(nn.Module):
    """A plain ViT and its simple feature pyramid: ``forward`` returns maps at strides 4-32.

    Input sides must be multiples of 32 (the pyramid's coarsest stride) and of the patch size.
    """

    def __init__(self, config: ViTConfig, in_chans: int = 3) -> None:
        super().__init__()
        missing = [f.name for f in fields(ViTConfig) if getattr(config, f.name) is None]
        if missing:
            raise ValueError(f"ViTBackbone: model.vit has no {', '.join(missing)} (resolve it first)")
        rows, cols = config.pos_grid
        self.vit = VisionTransformer(
            img_size=(rows * config.patch_size, cols * config.patch_size), patch_size=config.patch_size,
            in_chans=in_chans, num_classes=0, global_pool="", embed_dim=config.embed_dim, depth=config.depth,
            num_heads=config.num_heads, mlp_ratio=config.mlp_ratio, qkv_bias=True, class_token=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), dynamic_img_size=True, drop_path_rate=config.drop_path)
        self.pyramid = SimpleFeaturePyramid(config.embed_dim, config.patch_size)
        self.channels = self.pyramid.channels
        self.reductions = self.pyramid.reductions
        self.patch_size = config.patch_size
        self.pos_grid = tuple(config.pos_grid)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images [B, C, H, W] -> [B, channels[i], H / reductions[i], W / reductions[i]] per level."""
        return self.pyramid(self.encode(images))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W] -> the last block's normalised patch tokens [B, D, H / p, W / p].

        timm's forward, with the position embeddings resampled by ops whose sizes follow the
        input's shape, so that a traced ONNX graph keeps dynamic height and width.
        """
        vit = self.vit
        x = vit.patch_embed(images)  # [B, h, w, D]
        batch, rows, cols, dim = x.shape
        pos = vit.pos_embed[:, vit.num_prefix_tokens:]  # [1, L0, D], stored for self.pos_grid
        pos = pos.reshape(1, self.pos_grid[0], self.pos_grid[1], dim).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(rows, cols), mode="bicubic", align_corners=False)  # identity at the same size
        x = x.reshape(batch, rows * cols, dim) + pos.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
        cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(batch, -1, -1)  # [B, 1, D]
        x = vit.norm_pre(vit.patch_drop(vit.pos_drop(torch.cat([cls, x], dim=1))))
        x = vit.norm(vit.blocks(x))
        return x[:, 1:].transpose(1, 2).reshape(batch, dim, rows, cols)

    def no_weight_decay(self) -> set[str]:
        """timm's convention, prefixed: position embeddings and the class token."""
        return {f"vit.{name}" for name in self.vit.no_weight_decay()}

    def load_encoder(self, encoder: StateDict, source: str = "MAE encoder") -> None:
        """Load an MAE encoder's tensors (official names), resampling its position embeddings
        to this ViT's grid when they were made for another; anything else that does not fit
        raises CheckpointError naming ``source``."""
        own = self.vit.state_dict()
        tensors = dict(encoder)
        pos = tensors.get("pos_embed")
        if pos is not None and pos.shape != own["pos_embed"].shape and pos.shape[-1] == own["pos_embed"].shape[-1]:
            old = round((pos.shape[1] - 1) ** 0.5)
            tensors["pos_embed"] = resample_abs_pos_embed(pos, new_size=list(self.vit.patch_embed.grid_size),
                                                          old_size=[old, old], num_prefix_tokens=1)
        missing = sorted(own.keys() - tensors.keys())
        unexpected = sorted(tensors.keys() - own.keys())
        shapes = [f"{k} {tuple(v.shape)} (the ViT has {tuple(own[k].shape)})"
                  for k, v in tensors.items() if k in own and v.shape != own[k].shape]
        if missing or unexpected or shapes:
            problems = [f"{kind}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                        for kind, keys in (("missing", missing), ("unexpected", unexpected), ("shapes", shapes)) if keys]
            raise CheckpointError(f"{source}: does not fit the ViT backbone ({'; '.join(problems)})")
        self.vit.load_state_dict(tensors, strict=True)


def resolve_vit(model: ModelConfig, spec: EncoderSpec | None = None) -> ViTConfig:
    """Fill ``model.vit`` in place: from ``spec`` (an MAE encoder's), refusing set fields that
    disagree with it, or from ViT-S/16's values for ``backbone: vit``."""
    vit = model.vit
    if spec is None:
        for f in fields(ViTConfig):
            if getattr(vit, f.name) is None:
                value = getattr(VIT_DEFAULTS, f.name)
                if f.name == "pos_grid":
                    patch = vit.patch_size
                    value = [DEFAULT_PRETRAIN_SIDE // patch, DEFAULT_PRETRAIN_SIDE // patch]
                setattr(vit, f.name, value)
        return vit
    source = model.backbone.removeprefix(MAE_PREFIX)
    for name, label in _SPEC_FIELDS.items():
        theirs, ours = getattr(spec, name), getattr(vit, name)
        if ours is not None and not math.isclose(float(ours), float(theirs)):
            raise ConfigError(f"{source}: the MAE encoder has {label} {theirs}, but model.vit.{name} is {ours}; "
                              f"drop model.vit.{name} to take the encoder's ({spec.describe()})")
        setattr(vit, name, theirs)
    if vit.pos_grid is None:
        vit.pos_grid = list(spec.grid)
    return vit


def build_vit_backbone(model: ModelConfig, load_weights: bool = True) -> ViTBackbone:
    """The ViT backbone of ``model.backbone`` (vit or mae:RUN_OR_FILE), model.vit filled in.

    ``load_weights=False`` builds an MAE-started backbone from the recorded ``model.vit``
    alone (a trained MCN's file holds every weight); the MAE file is read only if fields are
    missing.
    """
    if model.backbone == VIT_BACKBONE:
        return ViTBackbone(resolve_vit(model))
    source = model.backbone.removeprefix(MAE_PREFIX)
    if not source:
        raise ConfigError("model.backbone mae: needs the MAE run or weight file after the colon (mae:runs/mae)")
    recorded = all(getattr(model.vit, f.name) is not None for f in fields(ViTConfig))
    if not load_weights and recorded:
        return ViTBackbone(model.vit)
    spec, encoder = read_mae_encoder(source)
    if spec.in_chans != 3:
        raise CheckpointError(f"{source}: the MAE encoder takes {spec.in_chans}-channel images; the MCN takes RGB")
    backbone = ViTBackbone(resolve_vit(model, spec))
    if load_weights:
        backbone.load_encoder(encoder, source)
    return backbone
