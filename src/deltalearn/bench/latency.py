"""``deltalearn mcn bench``: one multitask network against the composition of single-task ones.

The composition does the same work with one network per task, each with its own backbone,
neck and head; the pose network brings its own person-center heads (detection of the
person class), as CenterNet's multi-pose network does, since it has to find the persons
itself. Both sides get the same input in the same process; their runs alternate (multitask
first, then composition first) after warm-up, and the medians of many runs count. Every
runtime path is timed the same way:

  eager_fp32        PyTorch eager, float32
  eager_bf16        PyTorch eager, bf16 autocast + channels-last (where the CPU has native bf16)
  onnxruntime_fp32  the exported graph (raw outputs) in onnxruntime
  onnxruntime_int8  the same graph quantized to static INT8, calibrated on synthetic images

The onnxruntime sessions get torch's thread count and stop spinning at the end of each run,
so that the idle sessions of the composition do not compete with the running one. Besides
latency: parameters, FLOPs (PyTorch's flop counter: convolutions and matrix
products), decoding time and its share of the forward time (PyTorch decoding of the raw
outputs, and for onnxruntime the decoded graph's extra time over the raw one), peak memory (see
:mod:`deltalearn.bench.memory`), and the achieved FLOP/s as a fraction of the fp32 and
bf16 matmul peaks measured in the same run. Weights are random: the time does not depend on
them.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import onnxruntime
import torch
from torch.utils.flop_counter import FlopCounterMode

from ..engine.precision import cpu_supports_bf16
from ..mcn.backbones import normalize_images
from ..mcn.config import MCNConfig
from ..mcn.weights import ModelInfo, build_model
from .memory import peak_memory_mb
from .workload import (
    CALIBRATION_IMAGES, PATHS, BenchSettings, Workload, bench_images, export_graphs, network_infos, open_predictors
)

MATMUL_SIDE = 2048  # square matrices of the matmul peak measurement
TARGETS = {  # the targets: key of the result -> (comparison, bound)
    "latency_ratio": ("<=", 0.40),
    "param_ratio": ("<=", 0.37),
    "decode_share": ("<=", 0.03),
    "fraction_of_bf16_peak": (">=", 0.5),
    "speedup_vs_eager_fp32": (">=", 3.0),
}


def count_params(models: Sequence[torch.nn.Module]) -> int:
    return sum(p.numel() for model in models for p in model.parameters())


def count_flops(models: Sequence[torch.nn.Module], images: torch.Tensor) -> int:
    """FLOPs of one forward pass of each model (2 per multiply-add; convolutions, matmuls)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        for model in models:
            model(normalize_images(images))
    return int(counter.get_total_flops())


def matmul_peak_tflops(dtype: torch.dtype, side: int = MATMUL_SIDE, runs: int = 10) -> float:
    """Achieved TFLOP/s of a square ``side`` matmul in ``dtype`` (median of ``runs``)."""
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(side, side, generator=generator).to(dtype) for _ in range(2))
    seconds = median_seconds(lambda: a @ b, runs, warmup=3)
    return 2 * side**3 / seconds / 1e12


def median_seconds(func: Callable[[], Any], runs: int, warmup: int) -> float:
    for _ in range(warmup):
        func()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_times(first: Callable[[], Any], second: Callable[[], Any], runs: int,
                      warmup: int) -> tuple[list[float], list[float]]:
    """Seconds of ``first`` and ``second`` in each of ``runs`` rounds, run alternately
    (first-second, then second-first, so that neither always runs on a warmer cache) after
    ``warmup`` rounds."""
    times: tuple[list[float], list[float]] = ([], [])
    funcs = (first, second)
    for round_ in range(warmup + runs):
        for i in ((0, 1) if round_ % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            funcs[i]()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times[i].append(elapsed)
    return times


def interleaved_medians(first: Callable[[], Any], second: Callable[[], Any], runs: int,
                        warmup: int) -> tuple[float, float]:
    """Median seconds of ``first`` and ``second`` over :func:`interleaved_times`."""
    times = interleaved_times(first, second, runs, warmup)
    return statistics.median(times[0]), statistics.median(times[1])


def time_path(path: str, work: Workload, settings: BenchSettings, log: Callable[[str], None]) -> dict[str, Any]:
    """Latency of both sides on one runtime path; for onnxruntime also the cost of decoding
    inside the graph; peak memory if the settings ask for it."""
    log(f"{path}: preparing")
    onnx = path.startswith("onnxruntime")
    files = {side: export_graphs(path, work, side) if onnx else None for side in work.sides}
    runners = {side: open_predictors(path, work.sides[side], work.models[side], files[side], settings.threads)
               for side in work.sides}
    log(f"{path}: timing {settings.warmup} + {settings.runs} interleaved runs")
    mt, comp = interleaved_medians(*[lambda r=runners[side]: [p.outputs(work.images) for p in r]
                                     for side in work.sides], runs=settings.runs, warmup=settings.warmup)
    found: dict[str, Any] = {"multitask_ms": 1e3 * mt, "composition_ms": 1e3 * comp, "latency_ratio": mt / comp}
    if onnx:
        log(f"{path}: timing the multitask graph with decoding inside against the raw one")
        decoded, = open_predictors(path, work.sides["multitask"], files=export_graphs(path, work, "multitask", True),
                                   threads=settings.threads)
        raw, with_decoding = interleaved_times(lambda: runners["multitask"][0].outputs(work.images),
                                               lambda: decoded.outputs(work.images), settings.runs, settings.warmup)
        # the median of the paired differences of each round: both runs of a round see the same
        # machine state, so it varies far less than the difference of the two medians
        found["decode_in_graph_ms"] = 1e3 * statistics.median(d - r for r, d in zip(raw, with_decoding))
    if settings.memory:
        log(f"{path}: peak memory in fresh processes")
        for side in work.sides:
            found[f"{side}_memory_mb"] = peak_memory_mb(path, work.sides[side], files[side], settings)
    return found


def run_benchmark(config: MCNConfig, settings: BenchSettings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the multitask network of ``config`` against its single-task composition."""
    unknown = [p for p in settings.paths if p not in PATHS]
    if unknown:
        raise ValueError(f"unknown bench paths {unknown}; known: {', '.join(PATHS)}")
    load_before = os.getloadavg()[0]
    torch.set_num_threads(settings.threads)
    torch.manual_seed(0)
    multitask, singles = network_infos(config, settings.size)
    sides = {"multitask": [multitask], "composition": singles}
    models = {side: [build_model(info).eval() for info in infos] for side, infos in sides.items()}
    images = bench_images(settings.batch, settings.size)
    log(f"counting parameters and FLOPs; measuring matmul peaks ({MATMUL_SIDE}^2)")
    params = {side: count_params(m) for side, m in models.items()}
    flops = {side: count_flops(m, images) for side, m in models.items()}
    peaks = {"fp32": matmul_peak_tflops(torch.float32)}
    if cpu_supports_bf16():
        peaks["bf16"] = matmul_peak_tflops(torch.bfloat16)
    paths: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mcn_bench_") as tmp:
        calibration = [bench_images(1, settings.size, seed=1 + i).numpy() for i in range(CALIBRATION_IMAGES)]
        work = Workload(sides, models, images, Path(tmp), calibration)
        for path in settings.paths:
            if path == "eager_bf16" and not cpu_supports_bf16():
                paths[path] = {"skipped": "this CPU has no native bf16"}
            else:
                paths[path] = time_path(path, work, settings, log)
    decode = time_decoding(sides, models, images, settings)
    result = summarize(config, settings, sides, params, flops, peaks, paths, decode)
    # other processes' load skews every timing: 1-minute load averages before and after (this run adds ~threads)
    result["setup"]["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def time_decoding(sides: dict[str, list[ModelInfo]], models: dict[str, list[torch.nn.Module]],
                  images: torch.Tensor, settings: BenchSettings) -> dict[str, float]:
    """Median ms of decoding the raw outputs of each side (per-image results, as predict does),
    and of each task's decoding in the multitask network."""
    predictors = {side: open_predictors("eager_fp32", sides[side], models[side]) for side in sides}
    outputs = {side: [p.outputs(images) for p in predictors[side]] for side in sides}
    mt, comp = interleaved_medians(
        *[lambda s=side: [p.decode_outputs(o) for p, o in zip(predictors[s], outputs[s])] for side in sides],
        runs=settings.runs, warmup=settings.warmup)
    multitask, = models["multitask"]
    per_task = {name: 1e3 * median_seconds(lambda t=task: t.decode(outputs["multitask"][0], multitask.output_stride),
                                           settings.runs, settings.warmup)
                for name, task in multitask.tasks.items()}
    return {"multitask": 1e3 * mt, "composition": 1e3 * comp, "multitask_per_task": per_task}


def summarize(config: MCNConfig, settings: BenchSettings, sides: dict[str, list[ModelInfo]], params: dict[str, int],
              flops: dict[str, int], peaks: dict[str, float], paths: dict[str, dict[str, Any]],
              decode: dict[str, Any]) -> dict[str, Any]:
    """The JSON result: contract keys from the fastest path, details per path, targets."""
    for found in paths.values():
        if "multitask_ms" in found:
            found["multitask_tflops"] = flops["multitask"] / found["multitask_ms"] / 1e9
            for name, peak in peaks.items():
                found[f"fraction_of_{name}_peak"] = found["multitask_tflops"] / peak
            found["decode_share"] = decode["multitask"] / found["multitask_ms"]
            if "decode_in_graph_ms" in found:
                found["decode_in_graph_share"] = found["decode_in_graph_ms"] / found["multitask_ms"]
    timed = {name: found for name, found in paths.items() if "multitask_ms" in found}
    fastest = min(timed, key=lambda name: timed[name]["multitask_ms"])
    best = timed[fastest]
    decode_shares = {"pytorch": best["decode_share"], "in_graph": best.get("decode_in_graph_share", float("inf"))}
    decode_where = min(decode_shares, key=decode_shares.get)
    result: dict[str, Any] = {
        "multitask_ms": best["multitask_ms"], "composition_ms": best["composition_ms"],
        "latency_ratio": best["latency_ratio"], "path": fastest,
        "multitask_params": params["multitask"], "composition_params": params["composition"],
        "param_ratio": params["multitask"] / params["composition"],
        "multitask_gflops": flops["multitask"] / 1e9, "composition_gflops": flops["composition"] / 1e9,
        "flop_ratio": flops["multitask"] / flops["composition"],
        "multitask_decode_ms": decode["multitask"], "composition_decode_ms": decode["composition"],
        "decode_ms_per_task": decode["multitask_per_task"],
        "decode_share": decode_shares[decode_where], "decode_where": decode_where,
        "matmul_peak_tflops": peaks,
        "fraction_of_bf16_peak": best.get("fraction_of_bf16_peak"),
        "fraction_of_fp32_peak": best.get("fraction_of_fp32_peak"),
        "speedup_vs_eager_fp32": (timed["eager_fp32"]["multitask_ms"] / best["multitask_ms"]
                                  if "eager_fp32" in timed else None),
        "paths": paths,
        "setup": {"backbone": config.model.backbone, "tasks": list(config.model.tasks),
                  "neck_channels": config.model.neck_channels, "head_channels": config.model.head_channels,
                  "head_conv": config.model.head_conv, "head_trunk": config.model.head_trunk,
                  "neck_conv": config.model.neck_conv,
                  "composition": [info.config.model.tasks for info in sides["composition"]],
                  "categories": sides["multitask"][0].category_names, "size": settings.size,
                  "batch": settings.batch, "runs": settings.runs, "warmup": settings.warmup,
                  "threads": settings.threads, "torch": torch.__version__, "onnxruntime": _ort_version()},
    }
    result["targets"] = {key: {"value": result[key], "target": f"{op} {bound}",
                               "met": None if result[key] is None else
                               (result[key] <= bound if op == "<=" else result[key] >= bound)}
                         for key, (op, bound) in TARGETS.items()}
    return result


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f} %"


def _ort_version() -> str:
    return onnxruntime.__version__


def format_report(result: dict[str, Any]) -> str:
    """The result as a few lines and a table, for the terminal and the docs."""
    setup = result["setup"]
    lines = [
        f"{setup['backbone']}, tasks {'+'.join(setup['tasks'])} vs "
        f"{' | '.join('+'.join(t) for t in setup['composition'])}; "
        f"neck {setup['neck_channels']} / head {setup['head_channels']} channels, {setup['head_conv']} heads "
        f"{setup['head_trunk'].replace('_', ' ')}; {setup['size']} px, batch "
        f"{setup['batch']}, {setup['threads']} threads; medians of {setup['runs']} interleaved runs; load average "
        f"{setup['load_average'][0]} before, {setup['load_average'][1]} after",
        f"params {result['multitask_params'] / 1e6:.2f} M vs {result['composition_params'] / 1e6:.2f} M "
        f"(ratio {result['param_ratio']:.3f}); GFLOPs {result['multitask_gflops']:.1f} vs "
        f"{result['composition_gflops']:.1f} (ratio {result['flop_ratio']:.3f})",
        f"decoding (PyTorch, fp32) {result['multitask_decode_ms']:.1f} ms vs {result['composition_decode_ms']:.1f} ms; "
        "multitask per task: " + ", ".join(f"{k} {v:.1f} ms" for k, v in result["decode_ms_per_task"].items()),
        "matmul peaks: " + ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in result["matmul_peak_tflops"].items()),
        "",
        "| path | multitask ms | composition ms | latency ratio | TFLOP/s | of fp32 peak | of bf16 peak "
        "| decoding: PyTorch / in graph | memory MB (multitask / composition) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, found in result["paths"].items():
        if "skipped" in found:
            lines.append(f"| {name} | skipped: {found['skipped']} | | | | | | | |")
            continue
        memory = (f"{found['multitask_memory_mb']:.0f} / {found['composition_memory_mb']:.0f}"
                  if "multitask_memory_mb" in found else "-")
        lines.append(
            f"| {name} | {found['multitask_ms']:.1f} | {found['composition_ms']:.1f} | {found['latency_ratio']:.3f} "
            f"| {found['multitask_tflops']:.3f} | {found.get('fraction_of_fp32_peak', 0):.2f} "
            f"| {found.get('fraction_of_bf16_peak', float('nan')):.2f} | {100 * found['decode_share']:.1f} % / "
            f"{_percent(found.get('decode_in_graph_share'))} | {memory} |")
    lines.append("")
    for key, target in result["targets"].items():
        value = "n/a" if target["value"] is None else f"{target['value']:.3f}"
        verdict = "n/a" if target["met"] is None else ("met" if target["met"] else "MISSED")
        lines.append(f"target {key} {target['target']}: {value} ({verdict}, path {result['path']}"
                     + (f", decoding {result['decode_where']})" if key == "decode_share" else ")"))
    return "\n".join(lines)
