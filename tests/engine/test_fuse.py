"""Batch norms folded into the convolutions before them: same outputs, no norms left, and a
network where folding would change an output is left unfolded."""

from __future__ import annotations

import torch
from torch import nn

from deltalearn.config import load_config
from deltalearn.engine.fuse import fold_batchnorms
from deltalearn.mcn.config import MCNConfig
from deltalearn.mcn.predictor import TorchPredictor
from deltalearn.mcn.weights import ModelInfo, build_model


def _randomize_norms(model: nn.Module) -> None:
    """Running statistics and affine parameters far from the identity, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) * 2 - 1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) - 0.5)


def _norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _mcn(backbone: str) -> tuple[nn.Module, ModelInfo]:
    config = load_config(MCNConfig, None, [f"model.backbone={backbone}", "model.neck_channels=16",
                                           "model.head_channels=16", "data.image_size=64"])
    info = ModelInfo(config, category_ids=[1, 2], category_names=["person", "car"])
    return build_model(info).eval(), info


def test_folded_mcn_has_no_norms_and_the_same_outputs() -> None:
    for backbone in ("resnet18", "mobilenetv3_large_100"):  # plain BatchNorm2d, timm's BatchNormAct2d
        model, _ = _mcn(backbone)
        _randomize_norms(model)
        images = torch.randn(2, 3, 64, 64)
        folded, count = fold_batchnorms(model, images[:1])
        assert count == _norms(model) > 0 and _norms(folded) == 0, backbone
        with torch.no_grad():
            expected, found = model(images), folded(images)
        for key, value in expected.items():
            torch.testing.assert_close(found[key], value, rtol=1e-4, atol=1e-4)
        assert _norms(model) == count  # the original is untouched


class _ConvUsedTwice(nn.Module):
    """The convolution's output feeds the norm and, unnormalised, a residual sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.norm = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.norm(y) + y


def test_a_fold_that_would_change_the_output_is_not_made() -> None:
    model = _ConvUsedTwice().eval()
    _randomize_norms(model)
    x = torch.randn(1, 3, 8, 8)
    folded, count = fold_batchnorms(model, x)
    assert count == 0 and _norms(folded) == 1
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))


def test_predictor_runs_a_folded_copy_and_leaves_the_model_as_it_was() -> None:
    model, info = _mcn("resnet18")
    model.train()
    predictor = TorchPredictor(model, info, precision="fp32", device="cpu")
    assert predictor.folded_norms == _norms(model) > 0 and _norms(predictor.model) == 0
    assert model.training  # the caller's network (a trainer's, during validation) keeps its mode
    assert not predictor.model.training
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    unfolded = TorchPredictor(model, info, precision="fp32", device="cpu", fold_norms=False)
    assert unfolded.folded_norms == 0
    found, expected = predictor.outputs(images), unfolded.outputs(images)
    for key, value in expected.items():
        torch.testing.assert_close(found[key], value, rtol=1e-4, atol=1e-4)
