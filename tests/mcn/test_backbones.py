"""timm backbones: every tested one gives stride-4 outputs; image normalisation."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from deltalearn.config import load_config
from deltalearn.engine.checkpoint import CheckpointError
from deltalearn.mcn import BACKBONES, normalize_images
from deltalearn.mcn.backbones import TimmBackbone
from deltalearn.mcn.config import MCNConfig

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



@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_local_file_gives_exactly_its_weights(tmp_path, suffix: str) -> None:
    torch.manual_seed(7)
    whole = timm.create_model("resnet18")  # with its classifier, as timm's weight files are
    state = {k: v.contiguous() for k, v in whole.state_dict().items()}
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)  # timm reads it with torch.load(weights_only=True)
    override = load_config(MCNConfig, None, [f"model.pretrained={path}"]).model.pretrained
    assert override == str(path)
    body = TimmBackbone("resnet18", pretrained=override).body.state_dict()
    assert body and all(torch.equal(v, state[k]) for k, v in body.items())


def test_pretrained_accepts_booleans_and_a_missing_file_is_one_error(tmp_path) -> None:
    assert load_config(MCNConfig, None, ["model.pretrained=false"]).model.pretrained is False
    assert load_config(MCNConfig, None, ["model.pretrained=true"]).model.pretrained is True
    with pytest.raises(CheckpointError, match="missing.pth: model.pretrained weight file not found"):
        TimmBackbone("resnet18", pretrained=str(tmp_path / "missing.pth"))
    (tmp_path / "bad.pth").write_text("no weights")
    with pytest.raises(CheckpointError, match="bad.pth: not a weight file of timm model 'resnet18'"):
        TimmBackbone("resnet18", pretrained=str(tmp_path / "bad.pth"))
