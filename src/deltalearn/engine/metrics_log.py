"""Training records: one JSON object per line in ``metrics.jsonl``, mirrored to TensorBoard.

Each record is a flat dict with a ``split`` ("train" or "val"), ``epoch``, ``step`` and
numbers. Train records hold ``lr``, ``loss``, every named loss term and ``steps_per_s`` (the
steps since the record before, per wall-clock second); val records hold
what the evaluate function returned. TensorBoard (``run_dir/tb``) gets every number as
the scalar ``{split}/{name}`` at ``step``, when tensorboard is installed.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from ..data.io import atomic_write_text

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
_INDEX_KEYS = ("split", "epoch", "step")  # the identity of a record, not scalars to plot


def _plain(value: Any) -> Any:
    """JSON-safe value: non-finite floats become null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of a run's ``metrics.jsonl``, in order."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class MetricsLog:
    """Appends records to ``run_dir/metrics.jsonl`` and TensorBoard; inert when not ``enabled``.

    ``resume_step``: continue an earlier run, keeping its records up to that step and
    dropping those after it (written by the epoch that was interrupted). None: start anew.
    """

    def __init__(
        self, run_dir: str | Path, enabled: bool = True, resume_step: int | None = None, tensorboard: bool = True
    ) -> None:
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self._file = None
        self._writer = None
        if not enabled:
            return
        kept = [r for r in read_metrics(run_dir) if resume_step is not None and r.get("step", 0) <= resume_step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._file = self.path.open("a", encoding="utf-8")
        if tensorboard:
            self._writer = _summary_writer(Path(run_dir) / TENSORBOARD_DIR, resume_step)

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (a flat dict with at least ``split`` and ``step``)."""
        if not self.enabled or self._file is None:
            return
        record = {k: _plain(v) for k, v in record.items()}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            split, step = record.get("split", "train"), int(record.get("step", 0))
            for name, value in record.items():
                if name not in _INDEX_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{split}/{name}", value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _summary_writer(log_dir: Path, resume_step: int | None) -> Any:
    """A TensorBoard SummaryWriter, or None with one warning when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed: no TensorBoard logs (metrics.jsonl is written)",
                      stacklevel=3)
        return None
    # purge_step hides older events from that step on: a new run starts clean, a resumed
    # run's curves do not double back over the interrupted epoch
    return SummaryWriter(str(log_dir), purge_step=resume_step + 1 if resume_step is not None else 0)
