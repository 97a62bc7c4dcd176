"""Rendering generator jobs in worker processes, and the PNG settings of generated files."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from contextlib import nullcontext
from typing import TypeVar

import cv2
from tqdm import tqdm

# Worker processes start from a fork server, not by forking the caller: a plain fork copies
# the locks of the caller's OpenCV and torch thread pools mid-use, and a worker can hang on them.
WORKER_CONTEXT = multiprocessing.get_context("forkserver")
T = TypeVar("T")
PNG_COMPRESSION = 1  # fixed, so the same seed gives the same bytes


def _init_worker() -> None:
    cv2.setNumThreads(1)


def run_jobs(render: Callable[[tuple], T], jobs: list[tuple], workers: int | None = None, progress: bool = True,
             desc: str = "synth") -> list[T]:
    """``render`` every job, in this process or in ``workers`` processes (default: all cores),
    with a progress bar; results in the order of ``jobs``. Workers use one OpenCV thread each."""
    workers = min(workers or os.cpu_count() or 1, max(len(jobs), 1))
    with tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress) as bar, \
            (WORKER_CONTEXT.Pool(workers, initializer=_init_worker) if workers > 1 else nullcontext()) as pool:
        results = []
        for result in pool.imap(render, jobs, chunksize=4) if workers > 1 else map(render, jobs):
            results.append(result)
            bar.update(1)
    return results


def check_settings(num_images: int, size: int, seed: int, workers: int | None, min_size: int,
                   names: tuple[str, str, str, str] = ("num_images", "size", "seed", "workers")) -> None:
    """ValueError, naming the setting by ``names``, for fewer than 0 images, a size below
    ``min_size`` pixels, a negative seed, or fewer than 1 worker."""
    images, side, seed_name, worker_name = names
    if num_images < 0:
        raise ValueError(f"{images} must be >= 0, got {num_images}")
    if size < min_size:
        raise ValueError(f"{side} must be at least {min_size} pixels, got {size}")
    if seed < 0:
        raise ValueError(f"{seed_name} must be >= 0, got {seed}")
    if workers is not None and workers < 1:
        raise ValueError(f"{worker_name} must be >= 1, got {workers}")
