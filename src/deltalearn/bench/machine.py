"""What machine a measurement ran on, for the result files that record it."""

from __future__ import annotations

import platform
import subprocess


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` reports it (else Python's guess, else "unknown")."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        text = ""
    fields = {key.strip(): value for key, value in (line.split(":", 1) for line in text.splitlines() if ":" in line)}
    name = fields.get("Model name", "").strip()
    if not name:
        return platform.processor() or "unknown"
    model = fields.get("Model", "").strip()  # tells apart the chips a generic name covers
    return f"{name}, model {model}" if model and model not in name else name
