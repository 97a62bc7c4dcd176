"""MAE weight files: official facebookresearch checkpoints, Hugging Face ViTMAE, our safetensors.

``load_pretrained(model, source)`` fills an existing model (build it with ``create_mae`` as
the variant the checkpoint was trained as) from

- an official MAE file (``mae_pretrain_vit_base_full.pth``, ``mae_visualize_vit_large.pth``,
  a training ``checkpoint-N.pth``): a torch pickle whose top-level ``model`` dict uses our
  key names. Read with ``torch.load(weights_only=True)`` only; ``argparse.Namespace`` (the
  ``args`` of training checkpoints) is the one extra type allowed.
- a Hugging Face ``ViTMAEForPreTraining`` state dict (``.safetensors``, ``.bin`` or in
  memory), old (``vit.encoder.layer.N.attention.attention.query``) or new
  (``vit.layers.N.attention.q_proj``) names; separate q/k/v are fused into timm's ``qkv``.
- a file written by ``save_mae`` (our names, like the official ones).

The format is detected from the keys. Encoder-only files (``mae_pretrain_vit_base.pth``, a
HF ``ViTMAEModel``) raise unless ``allow_encoder_only=True``, which loads the encoder,
keeps the decoder as initialised and warns that reconstructions are meaningless until the
decoder is trained. Any other missing, unexpected or differently shaped key raises a
ValueError naming it. Position embeddings are fixed sin-cos: when the model was built for
another image size than the checkpoint, the checkpoint's are dropped and the model's
(regenerated for its own grid) kept, with a warning; the weights then run at the new size
but were trained at the old one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from deltalearn.config import from_dict, to_dict
from deltalearn.engine.checkpoint import read_weights, save_weights, weights_metadata
from deltalearn.mae.model import MAEConfig, MaskedAutoencoder

StateDict = dict[str, Tensor]
Source = str | os.PathLike | Mapping[str, Tensor]
FILE_FORMAT = "deltalearn.mae"  # safetensors metadata "format" of save_mae files
POS_EMBED_KEYS = ("pos_embed", "decoder_pos_embed")
DECODER_PREFIXES = ("decoder_", "mask_token")

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


@dataclass
class LoadedCheckpoint:
    """What ``load_pretrained`` found and did."""

    format: Literal["official", "hf"]  # key naming of the source
    encoder_only: bool  # True: the decoder was not in the source and is untrained
    regenerated_pos_embed: bool  # True: the source's grid differed; the model's sin-cos embeddings were kept


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


def _is_decoder_key(key: str) -> bool:
    return key.startswith(DECODER_PREFIXES)


def _fit_pos_embeds(model: MaskedAutoencoder, state_dict: StateDict) -> bool:
    """Drop position embeddings made for another grid; True if any was dropped."""
    own = model.state_dict()
    dropped = []
    for key in POS_EMBED_KEYS:
        theirs = state_dict.get(key)
        if theirs is not None and theirs.shape != own[key].shape and theirs.shape[-1] == own[key].shape[-1]:
            dropped.append(f"{key} {tuple(theirs.shape)} -> {tuple(own[key].shape)}")
            del state_dict[key]
    if dropped:
        warnings.warn(
            "checkpoint position embeddings are for another image size; using sin-cos embeddings "
            f"regenerated for the model's {model.grid_size} patch grid ({'; '.join(dropped)})",
            stacklevel=3,
        )
    return bool(dropped)


def _check_keys(model: MaskedAutoencoder, state_dict: StateDict, encoder_only: bool) -> None:
    """Raise one clear ValueError for missing, unexpected or mis-shaped keys."""
    own = model.state_dict()
    expected = {k for k in own if not (encoder_only and _is_decoder_key(k))} - set(POS_EMBED_KEYS)
    problems = []
    missing, unexpected = expected - state_dict.keys(), state_dict.keys() - own.keys()
    for kind, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            first = sorted(keys)[:5]
            problems.append(f"{kind} keys {first}{' ...' if len(keys) > 5 else ''} ({len(keys)})")
    shapes = [
        f"'{k}' is {tuple(v.shape)} in the checkpoint but {tuple(own[k].shape)} in the model"
        for k, v in state_dict.items()
        if k in own and v.shape != own[k].shape
    ]
    if shapes:
        problems.append(f"{shapes[0]} ({len(shapes)} mismatched shapes)")
    if problems:
        raise ValueError(
            "checkpoint does not fit this MAE (is it another variant? build the model with the "
            f"checkpoint's create_mae name and img_size): {'; '.join(problems)}"
        )


def load_pretrained(
    model: MaskedAutoencoder, source: Source, *, allow_encoder_only: bool = False
) -> LoadedCheckpoint:
    """Load official, Hugging Face or ``save_mae`` weights into ``model`` in place (see module doc)."""
    state_dict = read_state_dict(source)
    fmt = detect_format(state_dict)
    if fmt == "hf":
        state_dict = convert_hf_state_dict(state_dict)
    encoder_only = not any(_is_decoder_key(k) for k in state_dict)
    if encoder_only and not allow_encoder_only:
        raise ValueError(
            "encoder-only checkpoint (no decoder, mask_token or decoder_pred): it cannot reconstruct "
            "patches. Use a full checkpoint (e.g. mae_pretrain_vit_base_full.pth, mae_visualize_*.pth, "
            "HF ViTMAEForPreTraining) or pass allow_encoder_only=True and train the decoder"
        )
    regenerated = _fit_pos_embeds(model, state_dict)
    _check_keys(model, state_dict, encoder_only)
    model.load_state_dict(state_dict, strict=False)  # keys checked above; absent pos embeds stay regenerated
    if encoder_only:
        warnings.warn(
            "loaded an encoder-only checkpoint: the decoder is randomly initialised, so reconstructions "
            "and patch errors are meaningless until it is trained",
            stacklevel=2,
        )
    return LoadedCheckpoint(format=fmt, encoder_only=encoder_only, regenerated_pos_embed=regenerated)


def save_mae(model: MaskedAutoencoder, path: str | os.PathLike) -> None:
    """Write weights and config to a safetensors file, atomically (temp file, then rename)."""
    save_weights(model, path, metadata={"format": FILE_FORMAT, "config": json.dumps(to_dict(model.config))})


def load_mae(path: str | os.PathLike, device: str | torch.device = "cpu") -> MaskedAutoencoder:
    """Rebuild the model written by ``save_mae`` from its metadata, with its weights."""
    metadata = weights_metadata(path)
    if metadata.get("format") != FILE_FORMAT or "config" not in metadata:
        raise ValueError(
            f"{path}: not a deltalearn MAE file (no MAE config in its metadata); for official or "
            "Hugging Face weights use load_pretrained(create_mae(variant), path)"
        )
    model = MaskedAutoencoder(from_dict(MAEConfig, json.loads(metadata["config"])))
    model.load_state_dict(read_weights(path), strict=True)
    return model.to(device)
