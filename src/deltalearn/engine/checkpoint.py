"""Checkpoints: model weights as safetensors, training state as a weights-only torch file.

A run folder holds ``last.safetensors`` + ``last_state.pt`` (written every epoch) and
``best.safetensors`` (written when the tracked metric improves). Every file is written to a
temporary file beside its target and renamed into place, so a killed run never leaves a
half-written checkpoint. Training state is read only with ``torch.load(weights_only=True)``,
so it holds nothing but tensors, numbers, strings, lists and dicts.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..data.io import atomic_path, new_file_mode
from .distributed import unwrap_model

LAST_WEIGHTS = "last.safetensors"
LAST_STATE = "last_state.pt"
BEST_WEIGHTS = "best.safetensors"
_ALIASES_KEY = "deltalearn.aliases"  # safetensors metadata: {name: name it shares memory with}
_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel and torch.compile wrappers


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the model."""


def _strip_prefixes(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    return name


def weights_state_dict(model: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict without wrapper prefixes, as contiguous CPU tensors."""
    state = unwrap_model(model).state_dict() if isinstance(model, nn.Module) else model
    return {_strip_prefixes(k): v.detach().cpu().contiguous() for k, v in state.items()}


def _split_shared(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop exact duplicates (tied weights) as aliases; copy partial overlaps of one storage."""
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen_views: dict[tuple, str] = {}
    used_storages: set[int] = set()
    for name, tensor in tensors.items():
        storage = tensor.untyped_storage().data_ptr()
        view = (storage, tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype)
        if tensor.numel() and view in seen_views:
            aliases[name] = seen_views[view]
            continue
        if tensor.numel() and storage in used_storages:
            tensor = tensor.clone()
        else:
            used_storages.add(storage)
        seen_views[view] = name
        kept[name] = tensor
    return kept, aliases


def save_weights(
    model: nn.Module | dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """Write the weights of ``model`` (or a state dict) to a safetensors file, atomically.

    Tied (shared) tensors are stored once and restored by :func:`read_weights`; ``metadata``
    (string to string) is stored in the file header.
    """
    tensors, aliases = _split_shared(weights_state_dict(model))
    header = dict(metadata or {})
    if aliases:
        header[_ALIASES_KEY] = json.dumps(aliases)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
        os.chmod(tmp, new_file_mode())  # safetensors writes a new file with mode 0600


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file (tied tensors restored), on CPU."""
    header = weights_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    for name, source in json.loads(header.get(_ALIASES_KEY, "{}")).items():
        tensors[name] = tensors[source]
    return {_strip_prefixes(k): v for k, v in tensors.items()}


def weights_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata in a safetensors file's header (checks that the file is readable)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None


@dataclass
class WeightsMismatch:
    """How a checkpoint's tensors differ from a model's."""

    missing: list[str] = field(default_factory=list)  # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model
    shapes: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # (key, file, model)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.shapes)

    def describe(self, limit: int = 10) -> str:
        def names(keys: list[str]) -> str:
            more = f", ... ({len(keys) - limit} more)" if len(keys) > limit else ""
            return ", ".join(keys[:limit]) + more

        parts = []
        if self.missing:
            parts.append(f"missing keys ({len(self.missing)}): {names(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected keys ({len(self.unexpected)}): {names(self.unexpected)}")
        if self.shapes:
            shown = [f"{k}: checkpoint {list(a)} vs model {list(b)}" for k, a, b in self.shapes]
            parts.append(f"shape mismatches ({len(self.shapes)}): {names(shown)}")
        return "; ".join(parts)


def compare_weights(model: nn.Module, tensors: dict[str, torch.Tensor]) -> WeightsMismatch:
    """The keys and shapes in which ``tensors`` do not fit ``model``."""
    expected = unwrap_model(model).state_dict()
    return WeightsMismatch(
        missing=[k for k in expected if k not in tensors],
        unexpected=[k for k in tensors if k not in expected],
        shapes=[
            (k, tuple(tensors[k].shape), tuple(v.shape))
            for k, v in expected.items()
            if k in tensors and tensors[k].shape != v.shape
        ],
    )


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> WeightsMismatch:
    """Load a safetensors file into ``model`` (unwrapping DDP); return what did not fit.

    strict: any missing, unexpected or mis-shaped key raises CheckpointError naming them
    (e.g. a checkpoint trained with other heads than the config asks for). Not strict: the
    fitting tensors are loaded, the rest is reported.
    """
    tensors = read_weights(path)
    mismatch = compare_weights(model, tensors)
    if strict and mismatch:
        raise CheckpointError(
            f"{path}: weights do not fit the model ({mismatch.describe()}); "
            "was the checkpoint trained with another model config (backbone, tasks, heads, classes)?"
        )
    bad_shapes = {k for k, _, _ in mismatch.shapes}
    fitting = {k: v for k, v in tensors.items() if k not in bad_shapes and k not in mismatch.unexpected}
    unwrap_model(model).load_state_dict(fitting, strict=False)
    return mismatch


def find_weights(run_or_file: str | Path) -> Path:
    """A weights file itself, or in a run folder its best.safetensors, else last.safetensors."""
    path = Path(run_or_file)
    if path.is_dir():
        for name in (BEST_WEIGHTS, LAST_WEIGHTS):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: run folder holds neither {BEST_WEIGHTS} nor {LAST_WEIGHTS}")
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    return path


def save_state(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` of plain training state (tensors, numbers, lists, dicts), atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> dict[str, Any]:
    """Read training state written by :func:`save_state` (weights-only unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: training state file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise CheckpointError(f"{path}: unreadable training state ({type(error).__name__}: {error})") from None


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """The random generator states of python, numpy, torch (and the accelerator), as plain data."""
    version, internal, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {"keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type != "cpu":
        state["accelerator"] = torch.get_device_module(device.type).get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore the generator states captured by :func:`rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    npy = state["numpy"]
    keys = np.asarray(npy["keys"], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, npy["pos"], npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if device is not None and device.type != "cpu" and "accelerator" in state:
        torch.get_device_module(device.type).set_rng_state(state["accelerator"], device)

