"""Result files of the long benchmarks (benchmarks/*.py): resumable, tied to their settings.

A long benchmark writes ``{"settings", "cpu", "rows"}`` after each finished row; started
again with the same settings it keeps the rows and goes on, and a file written with other
settings is refused rather than mixed with the new rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..engine.metrics_log import read_metrics
from .machine import cpu_model

TASK_PREFIXES = ("det_", "pose_", "seg_")  # the held-out metrics of an MCN validation


def resume_results(path: str | Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The results so far in ``path``, or a new record for ``settings`` on this CPU.

    Raises ConfigError (one line naming the file) when it cannot be read or was written with
    other settings, naming those that differ.
    """
    path = Path(path)
    if not path.is_file():
        return {"settings": settings, "cpu": cpu_model(), "rows": {}}
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot resume from it ({error})") from None
    old = results.get("settings") if isinstance(results, dict) else None
    if old != settings:
        changed = sorted(k for k in settings if old.get(k) != settings[k]) if isinstance(old, dict) else ["settings"]
        raise ConfigError(f"{path}: written by another configuration of this benchmark (differs in "
                          f"{', '.join(changed) or 'settings'}); pass another --json or the same arguments")
    return results


def val_curve(run_dir: str | Path) -> list[dict[str, Any]]:
    """A run's validations from its metrics.jsonl: step and every task metric, in order."""
    return [{k: v for k, v in record.items() if k == "step" or k.startswith(TASK_PREFIXES)}
            for record in read_metrics(run_dir) if record.get("split") == "val"]
