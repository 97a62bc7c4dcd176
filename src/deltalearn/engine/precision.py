"""Device and numeric precision: what to run on, in which dtype, in which memory layout.

``resolve_precision("auto")`` picks bf16 autocast on CUDA devices that support it and on CPUs
where bf16 pays off, fp16 with a gradient scaler on older CUDA devices, and fp32 elsewhere.
On CPUs bf16 pays off with AMX tiles; with AVX-512 BF16 alone it depends on the chip (on one
2-core Xeon VM the demo's training step took 936 ms in bf16 + channels-last against 717 ms in
fp32), so there a small matmul in each dtype decides, once per process (``bf16`` can still be
asked for). Training and inference share it::

    precision = resolve_precision("auto", model=model)
    model = prepare_model(model, precision)
    with autocast(precision), torch.no_grad():
        outputs = model(images.to(precision.device))
"""

from __future__ import annotations

import os
import time
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
def cpu_has_amx() -> bool:
    """True when this CPU has AMX tiles (the matrix units that make bf16 faster than fp32)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:
        cpuinfo = Path("/proc/cpuinfo")
        return cpuinfo.is_file() and "amx_bf16" in cpuinfo.read_text(errors="ignore").split()


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


@lru_cache(maxsize=1)
def cpu_bf16_pays_off() -> bool:
    """Whether bf16 autocast is worth it on this CPU: with AMX, yes; with AVX-512 BF16 alone,
    when a bf16 matmul runs in under 0.8 of the fp32 one's time (about 50 ms to find out)."""
    if not cpu_supports_bf16():
        return False
    if cpu_has_amx():
        return True
    return _matmul_seconds(torch.bfloat16) < 0.8 * _matmul_seconds(torch.float32)


def _matmul_seconds(dtype: torch.dtype, side: int = 512, repeats: int = 5) -> float:
    """The best of ``repeats`` timings of one side x side matmul in ``dtype`` on the CPU."""
    a, b = torch.randn(side, side, dtype=dtype), torch.randn(side, side, dtype=dtype)
    a @ b  # warm-up: oneDNN picks and caches its kernel
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


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

    auto: bf16 on CUDA devices with native bf16 and on CPUs where it pays off
    (:func:`cpu_bf16_pays_off`), else fp16 on CUDA, else fp32.
    Channels-last is chosen when ``model`` has 2-D convolutions and either the precision is
    reduced or the device is a CPU: oneDNN's fp32 convolutions run faster in it too (2-core AMD
    EPYC, same outputs to 1e-6: inference at 512 px 1.19-1.54x, training steps at 128 px
    1.12-1.37x, for ResNet-18, DLA-34 and MobileNetV3 MCNs; ``benchmarks/channels_last.py``).
    fp32 on CUDA keeps the default layout (not measured there).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    device = torch.device(device) if device is not None else default_device()
    if precision == "auto":
        if device_supports_bf16(device) and (device.type != "cpu" or cpu_bf16_pays_off()):
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
        channels_last=(reduced or device.type == "cpu") and has_conv2d(model),
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
