"""Peak memory of one side of the benchmark (multitask, or the single-task composition) on one
runtime path, measured in a fresh process: how far its peak resident memory rises above the
resident memory it had just before loading the networks, after loading them and running
them once. That is what a deployment pays for weights, activations and runtime workspaces,
without the interpreter and the libraries, which every side loads alike.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from pathlib import Path

import torch

from ..export.onnx import INPUT_NAME
from ..export.runtime import open_session
from ..mcn.weights import ModelInfo
from .workload import BenchSettings, bench_images, open_predictors


def peak_memory_mb(path: str, infos: Sequence[ModelInfo], files: Sequence[Path] | None,
                   settings: BenchSettings) -> float:
    """MiB by which a fresh process's peak resident memory rises when it loads the networks
    of ``infos`` (PyTorch, random weights) or the ONNX ``files`` and runs them once."""
    context = multiprocessing.get_context("spawn")  # a clean process: no memory of this one, no forked threads
    with context.Pool(1) as pool:
        return pool.apply(_measure, (path, [info.metadata() for info in infos], [str(f) for f in files or []],
                                     settings.size, settings.batch, settings.threads))


def _status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS: resident now, VmHWM: peak resident) in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak() -> None:
    """Set the peak resident memory (VmHWM) to the present one (Linux 4.0+)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _measure(path: str, metadata: list[dict[str, str]], files: list[str], size: int, batch: int,
             threads: int) -> float:
    torch.set_num_threads(threads)
    images = bench_images(batch, size)
    _reset_peak()
    before = _status_kib("VmRSS")
    if path.startswith("onnxruntime"):  # the bare sessions: what a deployed runtime holds
        sessions = [open_session(file, threads) for file in files]
        for session in sessions:
            session.run(None, {INPUT_NAME: images.numpy()})
    else:
        infos = [ModelInfo.from_metadata(m, Path("<bench>")) for m in metadata]
        for predictor in open_predictors(path, infos):
            predictor.outputs(images)
    return (_status_kib("VmHWM") - before) / 1024
