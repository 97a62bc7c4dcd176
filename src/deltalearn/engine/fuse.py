"""Batch norms folded into the convolutions before them, for inference in PyTorch.

In eval mode a BatchNorm after a convolution is a per-channel affine map, so the convolution
can absorb it: W' = W * g / sqrt(v + eps) and b' = (b - m) * g / sqrt(v + eps) + beta. The
norm then disappears from the forward pass (an elementwise pass over every feature map, 6 % of
the mobile MCN's eager fp32 time on a 2-core EPYC). ONNX exports get the same folding from the
exporter; ultralytics' predictor does it for YOLO (``model.fuse()``).

Which convolution feeds which norm is found by running the network once on an example input
(timm backbones name their layers in many ways); a norm is folded only where its input is the
output of one convolution, and the folded network is checked against the original on that
input before it is returned.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class _AfterNorm(nn.Module):
    """What is left of a norm-plus-activation layer (timm's BatchNormAct2d) once its norm is folded."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.drop = norm.drop
        self.act = norm.act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def _replacement(norm: nn.BatchNorm2d) -> nn.Module | None:
    """The module that stands in for a folded norm; None when its forward is unknown."""
    if type(norm) is nn.BatchNorm2d:
        return nn.Identity()
    if hasattr(norm, "drop") and hasattr(norm, "act"):  # timm's BatchNormAct2d: norm, dropout, activation
        return _AfterNorm(norm)
    return None


def conv_norm_pairs(model: nn.Module, example: torch.Tensor) -> tuple[list[tuple[str, str]], object]:
    """Names of the (Conv2d, BatchNorm2d) pairs where the norm's input is the convolution's
    output, each module called once in a forward pass of ``example``; and that pass's output."""
    names = {module: name for name, module in model.named_modules()}
    calls: dict[str, int] = {}
    produced: dict[int, str] = {}  # id of a conv's output -> the conv's name
    keep: list[torch.Tensor] = []  # the outputs stay alive, so that their ids stay unique
    pairs: list[tuple[str, str]] = []

    def after_conv(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        calls[names[module]] = calls.get(names[module], 0) + 1
        produced[id(output)] = names[module]
        keep.append(output)

    def before_norm(module: nn.Module, inputs: tuple) -> None:
        calls[names[module]] = calls.get(names[module], 0) + 1
        if id(inputs[0]) in produced:
            pairs.append((produced[id(inputs[0])], names[module]))

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(after_conv))
        elif isinstance(module, nn.BatchNorm2d):
            hooks.append(module.register_forward_pre_hook(before_norm))
    try:
        with torch.no_grad():
            output = model(example)
    finally:
        for hook in hooks:
            hook.remove()
    feeding = [conv for conv, _ in pairs]
    pairs = [(conv, norm) for conv, norm in pairs if calls[conv] == calls[norm] == 1 and feeding.count(conv) == 1]
    return pairs, output


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def output_tensors(value: object) -> list[torch.Tensor]:
    """The tensors of a (nested) output, in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in output_tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in output_tensors(v)]
    return []


def fold_batchnorms(model: nn.Module, example: torch.Tensor, tolerance: float = 1e-4) -> tuple[nn.Module, int]:
    """An eval-mode copy of ``model`` with every foldable BatchNorm2d folded into the Conv2d
    before it, and the number folded. ``example`` is an input the model accepts; the copy's
    outputs on it must equal the original's within ``tolerance`` (relative to their largest
    magnitude), else the copy is returned unfolded, with 0."""
    given = model
    model = copy.deepcopy(given).eval()
    pairs, expected = conv_norm_pairs(model, example)
    count = 0
    for conv_name, norm_name in pairs:
        conv, norm = model.get_submodule(conv_name), model.get_submodule(norm_name)
        replacement = _replacement(norm)
        if replacement is None or norm.running_mean is None or norm.running_var is None:
            continue  # a norm of batch statistics, or one whose forward is unknown: kept
        fused = fuse_conv_bn_eval(conv, norm)
        if conv.weight.is_contiguous(memory_format=torch.channels_last):
            fused = fused.to(memory_format=torch.channels_last)
        _set(model, conv_name, fused)
        _set(model, norm_name, replacement)
        count += 1
    with torch.no_grad():
        expected, found = output_tensors(expected), output_tensors(model(example))
    scale = max([t.abs().max().item() for t in expected if t.numel()] + [1.0])
    if len(found) != len(expected) or any(
            (a.float() - b.float()).abs().max().item() > tolerance * scale for a, b in zip(expected, found) if a.numel()):
        return copy.deepcopy(given).eval(), 0  # ``given`` is untouched: a fresh copy of it is the unfolded network
    return model, count
