"""``deltalearn mcn bench``: one multitask network against the composition of single-task
networks, on every runtime path (an application of the library, as timm's benchmark.py)."""

from .latency import (
    TARGETS, count_flops, count_params, format_report, interleaved_medians, interleaved_times, run_benchmark
)
from .machine import cpu_model
from .memory import peak_memory_mb
from .workload import PATHS, BenchSettings, bench_images, network_infos, open_predictors, single_task_sets

__all__ = [
    "PATHS", "TARGETS", "BenchSettings", "bench_images", "count_flops", "cpu_model", "count_params", "format_report",
    "interleaved_medians", "interleaved_times",
    "network_infos", "open_predictors", "peak_memory_mb", "run_benchmark", "single_task_sets",
]
