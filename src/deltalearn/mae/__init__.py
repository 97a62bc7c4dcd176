"""MAE patch-graph segmentation: the masked autoencoder and its weight files."""

from deltalearn.mae.model import (
    MAE_VARIANTS,
    MAEConfig,
    MaskedAutoencoder,
    PatchErrors,
    create_mae,
    mae_config,
    masking_from_mask,
    patchify,
    random_masking,
    unpatchify,
)
from deltalearn.mae.weights import LoadedCheckpoint, load_mae, load_pretrained, save_mae

__all__ = [
    "MAE_VARIANTS",
    "LoadedCheckpoint",
    "MAEConfig",
    "MaskedAutoencoder",
    "PatchErrors",
    "create_mae",
    "load_mae",
    "load_pretrained",
    "mae_config",
    "masking_from_mask",
    "patchify",
    "random_masking",
    "save_mae",
    "unpatchify",
]
