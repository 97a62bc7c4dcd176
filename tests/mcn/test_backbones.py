"""timm backbones: every tested one gives stride-4 outputs; image normalisation."""

from __future__ import annotations

import pytest
import torch

from deltalearn.mcn import BACKBONES, normalize_images

from .sizes import NUM_CLASSES, SMALL, expected_shapes, mcn

INPUT_SIZES = [(128, 128), (96, 160)]  # multiples of 32, one not square


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_gives_stride_4_outputs(backbone: str) -> None:
    model = mcn(backbone, num_classes=NUM_CLASSES, **SMALL).eval()
    assert model.output_stride == 4
    channels = model.backbone.channels
    assert len(channels) == 4 and model.backbone.reductions == [4, 8, 16, 32]
    with torch.no_grad():
        for height, width in INPUT_SIZES:
            outputs = model(torch.randn(2, 3, height, width))
            assert {k: tuple(v.shape) for k, v in outputs.items()} == expected_shapes(height, width)


def test_normalize_images() -> None:
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    normalized = normalize_images(images)
    assert normalized[0, :, 0, 0].tolist() == pytest.approx([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224,
                                                             (1 - 0.406) / 0.225])

