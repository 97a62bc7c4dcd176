"""Warm start (``mcn train --init``): a new network takes every tensor of trained weights that fits.

A tensor of the file loads into the parameter or buffer of the same name and shape; so a
network that adds a task keeps the trained backbone, neck and the heads of the tasks both
share, and the added heads keep their fresh initialisation. A head for another number of
classes is skipped (shape mismatch) and starts fresh too.

An MAE checkpoint (a deltalearn MAE run or file, an official ``.pth``) initialises a ViT
backbone's encoder instead (position embeddings resampled to its grid); neck and heads stay
fresh. A CNN backbone refuses it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..engine import checkpoint as ckpt
from ..vit.checkpoint import FILE_FORMAT, MAE_RUN_WEIGHTS, read_mae_encoder
from .vit import ViTBackbone

SHOWN_SKIPPED = 6  # skipped names listed per part; the rest are counted


@dataclass
class Skipped:
    """A tensor of the file whose name the model has, with another shape."""

    name: str
    file_shape: tuple[int, ...]
    model_shape: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.name} (file {list(self.file_shape)}, model {list(self.model_shape)})"


@dataclass
class WarmStartReport:
    """What :func:`warm_start` did, by tensor name."""

    source: Path  # the weights file read
    loaded: list[str] = field(default_factory=list)  # in file and model with the same shape
    new: list[str] = field(default_factory=list)  # in the model only: keep their fresh values
    skipped: list[Skipped] = field(default_factory=list)  # same name, other shape: fresh values
    unused: list[str] = field(default_factory=list)  # in the file only (e.g. a task dropped)
    parts: dict[str, str] = field(default_factory=dict)  # tensor name -> top-level part

    def by_part(self) -> dict[str, dict[str, list[Any]]]:
        """``{part: {"loaded": [...], "new": [...], "skipped": [...], "unused": [...]}}`` in model order."""
        grouped: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        for kind in ("loaded", "new", "unused"):
            for name in getattr(self, kind):
                grouped[self.parts[name]][kind].append(name)
        for item in self.skipped:
            grouped[self.parts[item.name]]["skipped"].append(item)
        order = list(dict.fromkeys(self.parts.values()))
        return {part: dict(grouped[part]) for part in order if part in grouped}

    def describe(self) -> str:
        """A headline and one line per part: counts, and the skipped names with their shapes."""
        lines = [f"init from {self.source}: {len(self.loaded)} tensors loaded, {len(self.new)} new, "
                 f"{len(self.skipped)} skipped (shape mismatch), {len(self.unused)} unused from the file"]
        width = max((len(part) for part in self.by_part()), default=0)
        for part, kinds in self.by_part().items():
            counts = ", ".join(f"{kind} {len(kinds[kind])}" for kind in ("loaded", "new", "skipped", "unused")
                               if kinds.get(kind))
            line = f"  {part:<{width}}  {counts}"
            skipped = kinds.get("skipped", [])
            if skipped:
                more = f", ... ({len(skipped) - SHOWN_SKIPPED} more)" if len(skipped) > SHOWN_SKIPPED else ""
                line += ": " + ", ".join(map(str, skipped[:SHOWN_SKIPPED])) + more
            lines.append(line)
        return "\n".join(lines)

    def by_part_counts(self) -> dict[str, dict[str, int]]:
        """``{"parts": {part: {kind: count}}}``: what :meth:`describe` prints, as numbers."""
        return {"parts": {part: {kind: len(names) for kind, names in kinds.items()}
                          for part, kinds in self.by_part().items()}}

    def metrics(self) -> dict[str, Any]:
        """The init source and counts, for a run's returned metrics."""
        return {"init": str(self.source), "init_loaded": len(self.loaded), "init_new": len(self.new),
                "init_skipped": len(self.skipped)}


def part_of(model: nn.Module, name: str) -> str:
    """The top-level part of a tensor name: its first component, or two under a ModuleDict
    (``backbone``, ``neck``, ``tasks.det``)."""
    parts = name.split(".")
    first = getattr(model, parts[0], None)
    return ".".join(parts[:2]) if isinstance(first, nn.ModuleDict) and len(parts) > 2 else parts[0]


def warm_start(model: nn.Module, weights: str | Path) -> WarmStartReport:
    """Load into ``model`` every tensor of ``weights`` (a run folder: best, else last weights;
    or a .safetensors file) whose name and shape match a parameter or buffer; return the report.

    Raises CheckpointError when the file is missing or unreadable, or when no tensor fits.
    """
    if is_mae_checkpoint(weights):
        return _warm_start_encoder(model, Path(weights))
    path = ckpt.find_weights(weights)
    tensors = ckpt.read_weights(path)
    expected = model.state_dict()
    mismatch = ckpt.compare_weights(model, tensors)
    bad = {name for name, _, _ in mismatch.shapes}
    fitting = {name: tensors[name] for name in expected if name in tensors and name not in bad}
    if not fitting:
        raise ckpt.CheckpointError(
            f"{path}: none of its {len(tensors)} tensors fits the model by name and shape "
            f"({mismatch.describe(limit=3)}); --init needs weights of an MCN with the same backbone")
    with torch.no_grad():
        model.load_state_dict(fitting, strict=False)
    names = list(expected) + mismatch.unexpected
    return WarmStartReport(
        source=path,
        loaded=list(fitting),
        new=mismatch.missing,
        skipped=[Skipped(name, file_shape, model_shape) for name, file_shape, model_shape in mismatch.shapes],
        unused=mismatch.unexpected,
        parts={name: part_of(model, name) for name in names},
    )


def is_mae_checkpoint(weights: str | Path) -> bool:
    """A deltalearn MAE run folder or file, or a torch file (MCN weights are safetensors)."""
    path = Path(weights)
    if path.is_dir():
        return (path / MAE_RUN_WEIGHTS).is_file()
    if path.suffix in (".pth", ".pt", ".bin"):
        return True
    return path.suffix == ".safetensors" and path.is_file() and ckpt.weights_metadata(path).get("format") == FILE_FORMAT


def _warm_start_encoder(model: nn.Module, path: Path) -> WarmStartReport:
    """An MAE's encoder into the model's ViT backbone; everything else stays as built."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, ViTBackbone):
        name = getattr(backbone, "name", type(backbone).__name__)
        raise ckpt.CheckpointError(f"{path}: an MAE encoder, but the backbone is {name}, a CNN; an MAE initialises "
                                   f"a plain ViT (model.backbone=mae:{path}, or vit with model.vit set to its shapes)")
    _, encoder = read_mae_encoder(path)
    backbone.load_encoder(encoder, str(path))
    loaded = [f"backbone.vit.{name}" for name in encoder]
    names, done = list(model.state_dict()), set(loaded)
    return WarmStartReport(source=path, loaded=loaded, new=[n for n in names if n not in done], skipped=[],
                           unused=[], parts={name: part_of(model, name) for name in names})
