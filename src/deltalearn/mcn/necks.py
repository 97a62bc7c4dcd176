"""Necks: fuse a backbone's feature pyramid into one map at the finest level's stride (4)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU, 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def separable_bn_relu(channels: int, kernel_size: int = 3) -> nn.Sequential:
    """Depthwise conv -> 1x1 conv (no biases) -> BatchNorm -> ReLU: a factorised 'same' conv."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


NECK_CONVS = ("dense", "separable")


class UpsampleNeck(nn.Module):
    """Top-down fusion as in FPN / DLA-up, with plain convs and bilinear upsampling.

    Each level is projected to ``out_channels`` by a 1x1 conv; from the coarsest level down,
    the running map is upsampled by the stride ratio, added to the next finer projection
    and smoothed by a 3x3 conv (``conv="separable"``: depthwise 3x3 + 1x1, about 8x fewer
    multiply-adds at 64 channels). Output: [B, out_channels, H / reductions[0], W / reductions[0]].
    Only ONNX-exportable ops (no deformable convs).
    """

    def __init__(self, in_channels: Sequence[int], reductions: Sequence[int], out_channels: int = 64,
                 conv: str = "dense") -> None:
        super().__init__()
        if len(in_channels) != len(reductions) or len(in_channels) < 1:
            raise ValueError("neck: need one channel count per reduction, at least one level")
        if conv not in NECK_CONVS:
            raise ValueError(f"neck_conv must be one of {NECK_CONVS}, got {conv!r}")
        self.factors = [reductions[i + 1] // reductions[i] for i in range(len(reductions) - 1)]
        self.lateral = nn.ModuleList(conv_bn_relu(c, out_channels, 1) for c in in_channels)
        smooth = separable_bn_relu if conv == "separable" else (lambda c: conv_bn_relu(c, c, 3))
        self.smooth = nn.ModuleList(smooth(out_channels) for _ in self.factors)
        self.out_channels = out_channels
        self.output_stride = int(reductions[0])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """features: finest first, [B, in_channels[i], H / r_i, W / r_i] -> [B, out, H / r_0, W / r_0]."""
        fused = self.lateral[-1](features[-1])
        for level in range(len(self.factors) - 1, -1, -1):
            up = F.interpolate(fused, scale_factor=self.factors[level], mode="bilinear", align_corners=False)
            fused = self.smooth[level](up + self.lateral[level](features[level]))
        return fused
