"""Turn what ``gpu_session.sh`` brought back (its tarballs and gpu_bench JSON) into one results
file and a figure: the CUDA latencies, the Table 1 curves trained on the GPU beside the CPU
curves of the same settings (benchmarks/results/table1_8000.json), and the MAE's pretraining.

    python benchmarks/gpu_results.py --session /work/.device/1 /work/.device/2 \\
        --json benchmarks/results/gpu_h200.json

A Table 1 network the session stopped before its last step keeps its validation curve (the
learning rate had not annealed yet: compare it with the CPU curve at equal steps, not with the
CPU table's final row).
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from deltalearn.data.io import atomic_write_text  # noqa: E402

COMBINATIONS = ("seg", "det", "seg_det", "det_pose", "seg_det_pose")
PANELS = (("det_ap", "box AP"), ("pose_ap", "keypoint AP"), ("seg_iou", "person IoU"))


def read_jsonl(tar: tarfile.TarFile, name: str) -> list[dict[str, Any]]:
    try:
        member = tar.extractfile(name)
    except KeyError:
        return []
    return [json.loads(line) for line in member.read().decode().splitlines() if line.strip()] if member else []


def table1_rows(tar: tarfile.TarFile) -> dict[str, Any]:
    rows = {}
    for combo in COMBINATIONS:
        records = read_jsonl(tar, f"t1/{combo}/metrics.jsonl")
        if not records:
            continue
        train = [r for r in records if r.get("split") == "train"]
        curve = [{k: v for k, v in r.items() if k == "step" or k.startswith(("det_", "pose_", "seg_"))}
                 for r in records if r.get("split") == "val"]
        speeds = sorted(r["steps_per_s"] for r in train if "steps_per_s" in r)
        rows[combo] = {"last_step": train[-1]["step"] if train else 0, "curve": curve,
                       "median_steps_per_s": speeds[len(speeds) // 2] if speeds else None}
    return rows


def mae_run(tar: tarfile.TarFile) -> dict[str, Any] | None:
    records = [r for r in read_jsonl(tar, "mae_s16/metrics.jsonl") if r.get("split") == "train"]
    if not records:
        return None
    return {"steps": records[-1]["step"], "epochs": records[-1]["epoch"], "final_train_loss": records[-1]["loss"],
            "loss_curve": [(r["step"], round(r["loss"], 4)) for r in records]}


def plot(gpu_rows: dict[str, Any], cpu_rows: dict[str, Any], title: str, path: Path) -> None:
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4.4 * len(PANELS), 3.5))
    colors = {combo: f"C{i}" for i, combo in enumerate(COMBINATIONS)}
    for ax, (key, label) in zip(axes, PANELS):
        for source, rows, style in (("CPU", cpu_rows, "-"), ("H200", gpu_rows, "--")):
            for combo, row in rows.items():
                points = [(r["step"], 100 * r[key]) for r in row.get("curve", []) if r.get(key) is not None]
                if points:
                    ax.plot(*zip(*points), style, marker="o", markersize=3, color=colors[combo],
                            label=f"{combo.replace('_', '+')} ({source})")
        ax.set_title(label)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--session", type=Path, nargs="+", required=True,
                        help="folders with gpu_session.tar.gz (and gpu_bench.json), one per call")
    parser.add_argument("--cpu-table", type=Path, default=Path("benchmarks/results/table1_8000.json"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/gpu_h200.json"))
    args = parser.parse_args()
    result: dict[str, Any] = {"sessions": [str(p) for p in args.session], "calls": []}
    for folder in args.session:
        call: dict[str, Any] = {}
        bench = folder / "gpu_bench.json"
        if bench.is_file():
            call["gpu_bench"] = json.loads(bench.read_text())
        with tarfile.open(folder / "gpu_session.tar.gz") as tar:
            call["table1"] = table1_rows(tar)
            call["mae_vit_s16"] = mae_run(tar)
            for name in ("gpu_bench_compiled.json", "mae_eval.json"):
                try:
                    member = tar.extractfile(f"./{name}")
                    call[name.removesuffix(".json")] = json.loads(member.read()) if member else None
                except KeyError:
                    call[name.removesuffix(".json")] = None
        result["calls"].append(call)
    gpu_rows = {combo: row for call in result["calls"] for combo, row in call["table1"].items()}
    cpu = json.loads(args.cpu_table.read_text())
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    plot(gpu_rows, cpu["rows"], f"Table 1 networks, synthetic simple scenes, 128 px: {cpu.get('cpu', 'CPU')} "
         f"(solid) against one H200 running five at once (dashed, stopped by the time limit)",
         args.json.with_name(args.json.stem + "_table1.png"))
    print(f"wrote {args.json}")
    for combo, row in gpu_rows.items():
        print(f"{combo:<13} H200 reached {row['last_step']} steps ({row['median_steps_per_s']} steps/s): "
              + ", ".join(f"{r['step']}: " + " ".join(f"{k} {100 * v:.1f}" for k, v in r.items()
                                                      if k in ("det_ap", "pose_ap", "seg_iou")) for r in row["curve"]))


if __name__ == "__main__":
    main()
