"""Multi-process training under ``torchrun``, and the same calls as no-ops in one process.

``torchrun --nproc_per_node N -m deltalearn ...`` sets WORLD_SIZE, RANK and LOCAL_RANK;
:func:`init_distributed` then joins the process group (gloo on CPU, nccl on CUDA).
Without these variables every helper here is a single-process no-op, so the training
code has one path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .precision import default_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its global rank, its rank on the node, the process count."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, logs and writes files."""
        return self.rank == 0


def dist_info() -> DistInfo:
    """The ranks of this process, from the joined process group or torchrun's variables."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size())
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
    )


def process_device(device: torch.device | str | None = None) -> torch.device:
    """This process's device: ``device``, where a bare "cuda" means the GPU of LOCAL_RANK;
    default CUDA when present, else CPU."""
    if device is None:
        return default_device()
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", dist_info().local_rank)
    return device


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1 (else a no-op).

    The backend is nccl for CUDA devices and gloo otherwise; a CUDA process uses the GPU
    of its LOCAL_RANK.
    """
    info = dist_info()
    if not info.enabled or dist.is_initialized():
        return info
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    return dist_info()


def cleanup() -> None:
    """Leave the process group (no-op when none was joined), once every process has got here: a
    rank that tears down its gloo connections while a slower peer still uses them aborts that
    peer ("terminate called without an active exception", seen once on a loaded 2-core CI)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for all processes (no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def print0(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only."""
    if dist_info().is_main:
        print(*args, **kwargs)


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` under torchrun; ``model`` itself otherwise."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel or torch.compile wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The mean of each value over all processes (the values themselves in one process)."""
    if not dist_info().enabled or not dist.is_initialized() or not values:
        return values
    keys = sorted(values)
    stacked = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(stacked)
    stacked /= dist.get_world_size()
    return dict(zip(keys, stacked.tolist()))


def broadcast_value(value: float, device: torch.device) -> float:
    """Rank 0's ``value`` on every process, so that all of them decide alike (float32)."""
    if not dist_info().enabled or not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float32, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every process; ``[obj]`` in one process."""
    if not dist_info().enabled or not dist.is_initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


class EpochSampler(Sampler[int]):
    """Shuffled (or ordered) indices whose order depends only on ``(seed, epoch)``.

    The single-process counterpart of DistributedSampler: call ``set_epoch`` before each
    epoch (the Trainer does); a resumed run sees the same order as an uninterrupted one.
    """

    def __init__(self, data_source: Sized, shuffle: bool = True, seed: int = 0) -> None:
        self.data_source = data_source
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(len(self.data_source)))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())

    def __len__(self) -> int:
        return len(self.data_source)


class WeightedEpochSampler(Sampler[int]):
    """``len(weights)`` indices drawn with replacement, index i with probability proportional
    to ``weights[i]``, in an order that depends only on ``(seed, epoch)``; under torchrun each
    of ``world_size`` ranks takes every world_size-th draw from ``rank`` (padded to equal shares)."""

    def __init__(self, weights: Sequence[float], seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.weights = torch.as_tensor(list(weights), dtype=torch.float64)
        if self.weights.numel() == 0 or bool((self.weights < 0).any()) or float(self.weights.sum()) <= 0:
            raise ValueError("sampling weights must be non-negative with a positive sum")
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        self.per_rank = math.ceil(len(self.weights) / world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draws = torch.multinomial(self.weights, self.per_rank * self.world_size, replacement=True,
                                  generator=generator)
        return iter(draws[self.rank::self.world_size].tolist())

    def __len__(self) -> int:
        return self.per_rank


def make_sampler(dataset: Dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 weights: Sequence[float] | None = None) -> Sampler:
    """DistributedSampler (each rank its own share) under torchrun, else an EpochSampler; with
    ``weights`` (one per sample) a WeightedEpochSampler, under torchrun as well."""
    info = dist_info()
    if weights is not None:
        return WeightedEpochSampler(weights, seed=seed, rank=info.rank, world_size=info.world_size)
    if info.enabled:
        return DistributedSampler(
            dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    return EpochSampler(dataset, shuffle=shuffle, seed=seed)  # type: ignore[arg-type]


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    weights: Sequence[float] | None = None,
    **loader_kwargs: Any,
) -> DataLoader:
    """A DataLoader with a per-epoch reproducible order and, under torchrun, a per-rank share.

    ``batch_size`` is per process; ``weights`` (one per sample) draw samples in proportion to
    them instead of shuffling; ``loader_kwargs`` go to DataLoader (num_workers, collate_fn,
    pin_memory, ...).
    """
    sampler = make_sampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last, weights=weights)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **loader_kwargs)


def set_loader_epoch(loader: Any, epoch: int) -> None:
    """Call ``set_epoch`` on the loader's sampler (or batch sampler) where it has one."""
    for part in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        for candidate in (part, getattr(part, "sampler", None)):
            if hasattr(candidate, "set_epoch"):
                candidate.set_epoch(epoch)
                return
