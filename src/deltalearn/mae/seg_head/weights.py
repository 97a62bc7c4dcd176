"""Segmentation-head weight files.

``seg_head.safetensors`` holds the head's weights and, in its metadata, the head and MAE
configs and a fingerprint of the encoder; a fine-tuned encoder's weights are stored too,
a frozen one is given back to ``load_seg_head`` and checked against the fingerprint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ...config import from_dict, to_dict
from ...engine.checkpoint import CheckpointError, read_weights, save_weights, weights_metadata
from ..model import MAEConfig, MaskedAutoencoder
from .config import SegHeadConfig
from .model import MAESegmenter, build_segmenter, encoder_fingerprint, encoder_state

HEAD_FILE = "seg_head.safetensors"
FILE_FORMAT = "deltalearn.mae_seg_head"  # safetensors metadata "format" of seg_head files


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
