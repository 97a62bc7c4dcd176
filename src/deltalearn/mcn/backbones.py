"""Backbones from timm (``features_only``), and the one place that defines input normalisation.

Input convention of every MCN model: float images [B, 3, H, W], RGB, H and W multiples of 32,
scaled to [0, 1] and then normalised with ImageNet's mean and std (:func:`normalize_images`),
which is what timm's ImageNet weights of all supported backbones expect.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import timm
import torch
from torch import nn

from ..engine.checkpoint import CheckpointError

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB mean of ImageNet images in [0, 1]
IMAGENET_STD = (0.229, 0.224, 0.225)  # RGB std of ImageNet images in [0, 1]
BACKBONES = ("dla34", "resnet18", "mobilenetv3_large_100")  # tested; other timm names may work
FEATURE_LEVELS = 4  # deepest levels taken: reductions 4, 8, 16, 32 for the backbones above


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 3, H, W] RGB -> float [B, 3, H, W] normalised with ImageNet mean and std."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


class TimmBackbone(nn.Module):
    """A timm model's feature pyramid: ``forward`` returns one map per level, finest first.

    ``channels`` and ``reductions`` (strides) come from timm's ``feature_info``. The finest
    level must have stride ``output_stride`` (4), where the neck delivers its features.
    ``pretrained=True`` downloads timm's ImageNet weights (needs internet the first time); a
    path to a weight file of the whole timm model (.safetensors, or .pth/.bin read with
    ``torch.load(weights_only=True)``) loads those instead, offline.
    """

    def __init__(self, name: str = "dla34", pretrained: bool | str | Path = False, levels: int = FEATURE_LEVELS,
                 output_stride: int = 4) -> None:
        super().__init__()
        if not timm.is_model(name):
            near = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
            raise ValueError(f"unknown timm backbone {name!r}" + (f"; nearest: {', '.join(near)}" if near else "")
                             + f"; tested: {', '.join(BACKBONES)}")
        out_indices = tuple(range(-levels, 0))  # the deepest ``levels`` feature maps
        self.body = _create_features(name, pretrained, out_indices)
        self.name = name
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())
        if self.reductions[0] != output_stride:
            raise ValueError(f"backbone {name!r}: finest of its last {levels} levels has stride "
                             f"{self.reductions[0]}, the heads need {output_stride}")

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """images [B, 3, H, W] -> [B, channels[i], H / reductions[i], W / reductions[i]] per level."""
        return list(self.body(images))


def _create_features(name: str, pretrained: bool | str | Path, out_indices: tuple[int, ...]) -> nn.Module:
    """timm's ``features_only`` model of ``name``: random, timm's weights, or a local weight file's."""
    if isinstance(pretrained, bool):
        return timm.create_model(name, features_only=True, pretrained=pretrained, out_indices=out_indices)
    path = Path(pretrained)
    if not path.is_file():
        raise CheckpointError(f"{path}: model.pretrained weight file not found (give true, false or a "
                              ".safetensors/.pth file of a timm model)")
    try:  # timm loads the file into the whole model, then drops the classifier
        return timm.create_model(name, features_only=True, pretrained=True, out_indices=out_indices,
                                 pretrained_cfg_overlay={"file": str(path)})
    except Exception as error:  # torch.load, safetensors and load_state_dict raise many types
        detail = " ".join(str(error).split())[:300]
        raise CheckpointError(f"{path}: not a weight file of timm model {name!r} ({type(error).__name__}: {detail})") from None
