"""ViT encoder checkpoints, read without building a model: official facebookresearch MAE
files, Hugging Face ViTMAE state dicts and deltalearn's own ``save_mae`` files.

Both the MAE (``deltalearn.mae.weights`` loads whole autoencoders) and the MCN's plain-ViT
backbone (``deltalearn.mcn.vit`` starts from an MAE's encoder) read checkpoints through this
module. :func:`read_mae_encoder` returns the encoder's tensors under the official names
(``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks.N``, ``norm``: timm's
``VisionTransformer`` names too) with the architecture its shapes imply, so a file alone
says which ViT to build.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ..engine.checkpoint import CheckpointError, read_weights, weights_metadata

StateDict = dict[str, Tensor]
Source = str | os.PathLike | Mapping[str, Tensor]
FILE_FORMAT = "deltalearn.mae"  # safetensors metadata "format" of save_mae files
MAE_RUN_WEIGHTS = "mae.safetensors"  # the save_mae file a finished MAE pretraining run writes
ENCODER_PREFIXES = ("patch_embed.", "cls_token", "pos_embed", "blocks.", "norm.")
HEAD_DIM = 64  # width per attention head of every official MAE encoder (ViT-B/L/H: 768/12, 1024/16, 1280/16)

# Hugging Face ViTMAE names -> ours. Outside the blocks:
_HF_NAMES = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "decoder.mask_token": "mask_token",
    "decoder.decoder_pos_embed": "decoder_pos_embed",
}
# ... decoder head layers: decoder.decoder_pred.weight -> decoder_pred.weight
_HF_DECODER_HEAD = re.compile(r"^decoder\.(decoder_embed|decoder_norm|decoder_pred)\.(weight|bias)$")
# ... blocks: encoder.layer.N / layers.N -> blocks.N, decoder.decoder_layers.N -> decoder_blocks.N
_HF_BLOCKS = re.compile(r"^(?:encoder\.layer|layers|decoder\.(decoder_layers))\.(\d+)\.(.+)\.(weight|bias)$")
# ... inside a block (transformers < 5 and >= 5 names)
_HF_BLOCK_NAMES = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "mlp.fc1": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc2": "mlp.fc2",
}
_HF_QKV = {
    "attention.attention.query": 0, "attention.q_proj": 0,
    "attention.attention.key": 1, "attention.k_proj": 1,
    "attention.attention.value": 2, "attention.v_proj": 2,
}  # position in timm's fused qkv



def read_state_dict(source: Source) -> StateDict:
    """Tensors of a safetensors file, a torch file (weights only) or a mapping; unwraps ``{"model": ...}``."""
    where = "state dict" if isinstance(source, Mapping) else str(source)
    if isinstance(source, Mapping):
        data: object = source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such weight file")
        if path.suffix == ".safetensors":
            data = read_weights(path)
        else:
            try:
                with torch.serialization.safe_globals([argparse.Namespace]):
                    data = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # pickle errors have many types
                raise ValueError(f"{path}: not a readable weights-only torch file ({error})") from None
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        data = data["model"]
    if not isinstance(data, Mapping) or not all(isinstance(v, Tensor) for v in data.values()):
        raise ValueError(f"{where}: not a mapping of tensors")
    return dict(data)


def detect_format(state_dict: Mapping[str, Tensor]) -> Literal["official", "hf"]:
    """'official' (our and facebookresearch names) or 'hf' (transformers ViTMAE names)."""
    if "patch_embed.proj.weight" in state_dict:
        return "official"
    if any(k.startswith(("vit.embeddings.", "embeddings.patch_embeddings.")) for k in state_dict):
        return "hf"
    some = ", ".join(list(state_dict)[:5])
    raise ValueError(f"not an MAE state dict (no patch embedding key); first keys: {some}")


def convert_hf_state_dict(state_dict: Mapping[str, Tensor]) -> StateDict:
    """Hugging Face ViTMAE(ForPreTraining|Model) names -> ours, with q/k/v fused into ``qkv``."""
    out: StateDict = {}
    qkv: dict[str, list[Tensor | None]] = {}  # our qkv key -> [q, k, v]
    for key, value in state_dict.items():
        name = key.removeprefix("vit.")
        if name in _HF_NAMES:
            out[_HF_NAMES[name]] = value
        elif match := _HF_DECODER_HEAD.match(name):
            out[f"{match[1]}.{match[2]}"] = value
        elif match := _HF_BLOCKS.match(name):
            is_decoder, index, inner, param = match.groups()
            prefix = f"{'decoder_blocks' if is_decoder else 'blocks'}.{index}"
            if inner in _HF_QKV:
                slots = qkv.setdefault(f"{prefix}.attn.qkv.{param}", [None, None, None])
                slots[_HF_QKV[inner]] = value
            elif inner in _HF_BLOCK_NAMES:
                out[f"{prefix}.{_HF_BLOCK_NAMES[inner]}.{param}"] = value
            else:
                raise ValueError(f"unknown Hugging Face ViTMAE key '{key}'")
        else:
            raise ValueError(f"unknown Hugging Face ViTMAE key '{key}'")
    for key, parts in qkv.items():
        if any(part is None for part in parts):
            missing = [n for n, part in zip("qkv", parts) if part is None]
            raise ValueError(f"Hugging Face checkpoint lacks the {'/'.join(missing)} part of '{key}'")
        out[key] = torch.cat(parts, dim=0)  # [3*D, D] or [3*D]: q, k, v stacked as timm expects
    for key in [k for k in out if k.endswith(".attn.qkv.weight")]:  # qkv_bias=False checkpoints
        bias = key.removesuffix("weight") + "bias"
        out.setdefault(bias, torch.zeros(out[key].shape[0], dtype=out[key].dtype))
    return out


@dataclass(frozen=True)
class EncoderSpec:
    """The architecture of a ViT encoder, as its checkpoint's shapes (and metadata) tell it."""

    embed_dim: int  # width D
    depth: int  # transformer blocks
    num_heads: int  # attention heads (metadata, else D / 64 as in every official MAE)
    patch_size: int  # side of a square patch in pixels
    in_chans: int  # image channels
    grid: tuple[int, int]  # (rows, cols) of the patch grid its position embeddings were made for
    mlp_ratio: float  # MLP hidden width / D
    norm_eps: float = 1e-6  # LayerNorm epsilon (official MAE: 1e-6)

    @property
    def img_size(self) -> tuple[int, int]:
        """(height, width) in pixels of the pretraining input."""
        return self.grid[0] * self.patch_size, self.grid[1] * self.patch_size

    def describe(self) -> str:
        return (f"ViT width {self.embed_dim}, depth {self.depth}, {self.num_heads} heads, patch {self.patch_size}, "
                f"pretrained at {self.img_size[0]}x{self.img_size[1]} px")


def is_encoder_key(key: str) -> bool:
    return key.startswith(ENCODER_PREFIXES)


def read_mae_encoder(source: str | os.PathLike) -> tuple[EncoderSpec, StateDict]:
    """The encoder of an MAE checkpoint: its architecture and tensors (official names).

    ``source``: a deltalearn MAE run folder (its ``mae.safetensors``), a ``save_mae`` file,
    an official MAE ``.pth`` (full, encoder-only ``mae_pretrain_vit_*.pth`` or a training
    ``checkpoint-N.pth``) or a Hugging Face ViTMAE state dict. Raises CheckpointError with the
    path for a missing folder file or a file that holds no ViT encoder.
    """
    path = Path(source)
    if path.is_dir():
        if not (path / MAE_RUN_WEIGHTS).is_file():
            raise CheckpointError(f"{path}: no {MAE_RUN_WEIGHTS} in this folder (is it a finished deltalearn MAE "
                                  "pretraining run? give the run folder or an MAE weight file)")
        path = path / MAE_RUN_WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path}: MAE weight file not found")
    try:
        state_dict = read_state_dict(path)
        if detect_format(state_dict) == "hf":
            state_dict = convert_hf_state_dict(state_dict)
    except ValueError as error:
        raise CheckpointError(f"{path}: not an MAE checkpoint ({error})") from None
    encoder = {k: v for k, v in state_dict.items() if is_encoder_key(k)}
    settings = {}
    if path.suffix == ".safetensors":
        metadata = weights_metadata(path)
        if metadata.get("format") == FILE_FORMAT and "config" in metadata:
            settings = json.loads(metadata["config"])
    try:
        spec = _encoder_spec(encoder, settings)
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{path}: its encoder's shapes do not describe a ViT ({error})") from None
    return spec, encoder


def _encoder_spec(encoder: StateDict, settings: dict) -> EncoderSpec:
    """Architecture from tensor shapes; ``settings`` (a save_mae config) give heads and epsilon."""
    proj = encoder["patch_embed.proj.weight"]  # [D, C, p, p]
    embed_dim, in_chans, patch, patch_w = proj.shape
    if patch != patch_w:
        raise ValueError(f"patch embedding {tuple(proj.shape)} is not square")
    depth = len({int(k.split(".")[1]) for k in encoder if k.startswith("blocks.")})
    if depth == 0:
        raise ValueError("no transformer blocks")
    pos = encoder["pos_embed"]  # [1, (1 +) L, D]
    tokens = pos.shape[1] - (1 if "cls_token" in encoder else 0)
    if "img_size" in settings:
        size = settings["img_size"]
        height, width = (size, size) if isinstance(size, int) else size
        grid = (height // patch, width // patch)
    else:  # official checkpoints are square
        side = round(tokens ** 0.5)
        grid = (side, side)
    if grid[0] * grid[1] != tokens:
        raise ValueError(f"pos_embed {tuple(pos.shape)} does not fit a {grid[0]}x{grid[1]} grid")
    hidden = encoder["blocks.0.mlp.fc1.weight"].shape[0]
    heads = int(settings.get("num_heads", max(1, embed_dim // HEAD_DIM)))
    return EncoderSpec(embed_dim=int(embed_dim), depth=depth, num_heads=heads, patch_size=int(patch),
                       in_chans=int(in_chans), grid=grid, mlp_ratio=hidden / embed_dim,
                       norm_eps=float(settings.get("norm_eps", 1e-6)))
