"""Device and numeric precision: what to run on, in which dtype, in which memory layout.

``resolve_precision("auto")`` picks bf16 autocast on CPUs with native bf16 (AVX-512 BF16
or AMX) and on CUDA devices that support it, fp16 with a gradient scaler on older CUDA
devices, and fp32 elsewhere. Training and inference share it::

    precision = resolve_precision("auto", model=model)
    model = prepare_model(model, precision)
    with autocast(precision), torch.no_grad():
        outputs = model(images.to(precision.device))
"""

from __future__ import annotations

import os
import warnings
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic


@dataclass(frozen=True)
class Precision:
    """How to run a model: the device, the autocast dtype (float32: no autocast), the layout."""

    device: torch.device
    dtype: torch.dtype  # autocast dtype; torch.float32 means plain fp32
    channels_last: bool  # convert 4-D conv models to channels-last memory format
    use_scaler: bool  # float16 needs a GradScaler against gradient underflow

    @property
    def autocast_enabled(self) -> bool:
        return self.dtype != torch.float32

    @property
    def name(self) -> str:
        return {v: k for k, v in _DTYPES.items()}[self.dtype]


def default_device() -> torch.device:
    """CUDA when present (the device of this process's LOCAL_RANK under torchrun), else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when this CPU does bf16 arithmetic natively (oneDNN's check, else the CPU flags)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        pass
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = set(cpuinfo.read_text(errors="ignore").split())
    return any(flag in flags for flag in _CPU_BF16_FLAGS)


def device_supports_bf16(device: torch.device) -> bool:
    """Native bf16 on ``device`` (CPU: AVX-512 BF16/AMX; CUDA: compute capability 8.0+)."""
    if device.type == "cpu":
        return cpu_supports_bf16()
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return False


def has_conv2d(model: nn.Module | None) -> bool:
    """Whether ``model`` contains a 2-D convolution (then channels-last pays off)."""
    return model is not None and any(isinstance(m, nn.Conv2d) for m in model.modules())


def resolve_precision(
    precision: str = "auto", device: torch.device | str | None = None, model: nn.Module | None = None
) -> Precision:
    """Turn a precision name (auto|fp32|bf16|fp16) into a :class:`Precision` for ``device``.

    auto: bf16 where the device has native bf16, else fp16 on CUDA, else fp32.
    Channels-last is chosen for reduced precision when ``model`` has 2-D convolutions.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    device = torch.device(device) if device is not None else default_device()
    if precision == "auto":
        if device_supports_bf16(device):
            precision = "bf16"
        else:
            precision = "fp16" if device.type == "cuda" else "fp32"
    elif precision == "bf16" and not device_supports_bf16(device):
        if device.type != "cpu":
            raise ValueError(f"precision bf16: device {device} does not support bfloat16")
        warnings.warn("precision bf16: this CPU has no native bf16, autocast will be slow", stacklevel=2)
    dtype = _DTYPES[precision]
    reduced = dtype != torch.float32
    return Precision(
        device=device,
        dtype=dtype,
        channels_last=reduced and has_conv2d(model),
        use_scaler=dtype == torch.float16,
    )


def autocast(precision: Precision) -> AbstractContextManager:
    """The autocast context of ``precision`` (a no-op for fp32)."""
    return torch.autocast(
        device_type=precision.device.type, dtype=precision.dtype, enabled=precision.autocast_enabled
    )


def prepare_model(model: nn.Module, precision: Precision) -> nn.Module:
    """Move ``model`` to the device (weights stay fp32) and to channels-last if chosen."""
    model = model.to(precision.device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def grad_scaler(precision: Precision) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for float16."""
    return torch.amp.GradScaler(precision.device.type, enabled=precision.use_scaler)
