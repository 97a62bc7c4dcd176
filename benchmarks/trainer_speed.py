"""Steps per second of the whole trainer, data worker included: ``deltalearn mcn train`` with the
demo's config (``synth_seg_det_pose``, 128 px, batch 16, one data worker) for a few epochs of
125 steps, run once per source tree, back to back, so that two commits can be compared on one
machine. The first epoch (sample cache filling, warm-up) is left out of the rate. Run it alone.

    git worktree add /tmp/before <commit>
    python benchmarks/trainer_speed.py --src before=/tmp/before/src --src now=src \\
        --json benchmarks/results/trainer_speed.json

``--env KEY=VALUE`` runs every tree once more with that environment variable set (for example
``OMP_WAIT_POLICY=PASSIVE``, which background jobs on a shared machine use).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from deltalearn.bench import cpu_model
from deltalearn.data.io import atomic_write_text
from deltalearn.data.synth import generate_people

STEPS_PER_EPOCH = 125  # 2,000 images, batch 16


def epoch_seconds(log: str, epochs: int) -> dict[int, int]:
    """Seconds of each finished epoch, from the last progress-bar update of each."""
    found = re.findall(rf"epoch (\d+)/{epochs}: 100%\|[^|]*\| {STEPS_PER_EPOCH}/{STEPS_PER_EPOCH} \[(\d+):(\d+)<", log)
    return {int(epoch): 60 * int(minutes) + int(seconds) for epoch, minutes, seconds in found}


def run(src: str | None, data: Path, epochs: int, env: dict[str, str]) -> dict:
    environment = {**os.environ, **env}
    if src:
        environment["PYTHONPATH"] = str(Path(src).resolve())
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-c", "from deltalearn.cli import main; main()", "mcn", "train",
                   "--config", "synth_seg_det_pose", "--data", str(data), "--out", out, f"train.epochs={epochs}",
                   "train.max_minutes=0", "train.schedule_by_clock=false", "model.pretrained=false"]
        done = subprocess.run(command, env=environment, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: training with {src or 'the installed package'} failed:\n{done.stderr[-2000:]}")
    seconds = epoch_seconds(done.stderr + done.stdout, epochs)
    timed = [seconds[e] for e in range(2, epochs + 1) if e in seconds]
    if not timed:
        sys.exit("error: no epoch times found in the trainer's progress output")
    return {"epoch_seconds": seconds, "steps_per_s": round(len(timed) * STEPS_PER_EPOCH / sum(timed), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", action="append", default=[], metavar="NAME=PATH",
                        help="a source tree (its src/ folder) to time; default the installed package")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="also time every tree with this variable set")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data", type=Path, default=Path("runs/trainer_speed/data"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/trainer_speed.json"))
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first is not timed)")
    trees = dict(item.split("=", 1) for item in args.src) if args.src else {"installed": ""}
    extra = dict(item.split("=", 1) for item in args.env)
    if not (args.data / "annotations.json").is_file():
        generate_people(args.data, num_images=2000, size=128, seed=0, scene="simple")
    result = {"command": "python " + " ".join(sys.argv), "cpu": cpu_model(), "epochs": args.epochs,
              "steps_per_epoch": STEPS_PER_EPOCH, "runs": {}}
    settings = [("", {})] + [(f" {key}={value}", {key: value}) for key, value in extra.items()]
    for name, src in trees.items():
        for suffix, env in settings:
            row = run(src, args.data, args.epochs, env)
            result["runs"][name + suffix] = row
            print(f"{name + suffix:<40} {row['steps_per_s']:.2f} steps/s  epochs {row['epoch_seconds']}", flush=True)
            atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
