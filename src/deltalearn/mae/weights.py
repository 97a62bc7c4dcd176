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

import json
import os
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from deltalearn.config import from_dict, to_dict
from deltalearn.engine.checkpoint import read_weights, save_weights, weights_metadata
from deltalearn.mae.model import MAEConfig, MaskedAutoencoder
from deltalearn.vit.checkpoint import (FILE_FORMAT, Source, StateDict, convert_hf_state_dict, detect_format,
                                       read_state_dict)

__all__ = ["FILE_FORMAT", "LoadedCheckpoint", "convert_hf_state_dict", "detect_format", "load_mae",
           "load_pretrained", "read_state_dict", "save_mae"]

POS_EMBED_KEYS = ("pos_embed", "decoder_pos_embed")
DECODER_PREFIXES = ("decoder_", "mask_token")


@dataclass
class LoadedCheckpoint:
    """What ``load_pretrained`` found and did."""

    format: Literal["official", "hf"]  # key naming of the source
    encoder_only: bool  # True: the decoder was not in the source and is untrained
    regenerated_pos_embed: bool  # True: the source's grid differed; the model's sin-cos embeddings were kept


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
