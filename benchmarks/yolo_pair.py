"""One mobile Multitask CenterNet against the pair of current single-family networks that give
the same three outputs: ultralytics YOLO11n-seg (boxes and instance masks) + YOLO11n-pose
(persons and 17 keypoints). Both sides from random weights (latency does not depend on them),
1 x 3 x SIZE x SIZE, the same threads, raw network outputs (no NMS, no decoding) on each side:

- onnxruntime fp32, each network exported by its own exporter (``mcn export``'s graph; YOLO's
  ``export(format="onnx")``), one session per network;
- PyTorch eager fp32, each side in the form its predictor runs: YOLO fused by ultralytics,
  the MCN with its batch norms folded (``TorchPredictor``), both channels-last (faster on the
  CPU for every network measured, ``benchmarks/channels_last.py``).

Each MCN variant and the pair run alternately, round by round (``interleaved_medians``), so that
neither always runs on a warmer cache. Needs ``pip install ultralytics``. Run it alone on the
machine.

    python benchmarks/yolo_pair.py --json benchmarks/results/yolo_pair.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from deltalearn.bench import cpu_model
from deltalearn.bench.latency import count_flops, count_params, interleaved_medians
from deltalearn.bench.workload import network_infos
from deltalearn.config import load_config
from deltalearn.data.io import atomic_write_text
from deltalearn.engine.fuse import fold_batchnorms
from deltalearn.export.onnx import export_onnx
from deltalearn.export.runtime import open_session
from deltalearn.mcn.backbones import normalize_images
from deltalearn.mcn.config import MCNConfig
from deltalearn.mcn.weights import build_model

MOBILE = ["model.backbone=mobilenetv3_large_100", "model.tasks=[det,seg,pose]"]
VARIANTS = {  # name: overrides of the mobile MCN
    "dense heads, per output (CenterNet's)": [],
    "separable heads, per output": ["model.head_conv=separable"],
    "separable heads, per task": ["model.head_conv=separable", "model.head_trunk=per_task"],
    "separable heads, per task, 32 channels": ["model.head_conv=separable", "model.head_trunk=per_task",
                                               "model.head_channels=32"],
    "separable heads, per task, separable neck": ["model.head_conv=separable", "model.head_trunk=per_task",
                                                  "model.neck_conv=separable"],
}
YOLO_PAIR = ("yolo11n-seg.yaml", "yolo11n-pose.yaml")


def mcn_variant(overrides: list[str], size: int, folder: Path) -> dict:
    config = load_config(MCNConfig, None, [*MOBILE, *overrides, f"data.image_size={size}"])
    info, _ = network_infos(config, size)
    model = build_model(info).float().eval()
    path = folder / f"mcn_{len(list(folder.glob('mcn_*.onnx')))}.onnx"
    export_onnx(model, info, path)
    return {"model": model, "onnx": path}


def yolo_models(size: int, folder: Path) -> list[dict]:
    from ultralytics import YOLO

    models = []
    for name in YOLO_PAIR:
        with contextlib.chdir(folder), contextlib.redirect_stdout(io.StringIO()):
            yolo = YOLO(name)
            onnx_path = folder / yolo.export(format="onnx", imgsz=size, dynamic=False, simplify=True)
        model = YOLO(name).model.fuse().float().eval().to(memory_format=torch.channels_last)
        models.append({"name": name, "model": model, "onnx": onnx_path})
    return models


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="VARIANT",
                        help="MCN variants to time (default all)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/yolo_pair.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = args.size
    pixels = np.random.default_rng(0).integers(0, 256, (1, 3, size, size), dtype=np.uint8)
    images = torch.from_numpy(pixels)
    floats = (images.float() / 255).contiguous(memory_format=torch.channels_last)  # YOLO's input: RGB in [0, 1]
    result: dict = {"command": "python " + shlex.join(sys.argv), "cpu": cpu_model(), "cores": os.cpu_count(),
                    "threads": args.threads, "size": size, "runs": args.runs, "torch": torch.__version__,
                    "onnxruntime": ort.__version__, "pair": {}, "mcn": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pair = yolo_models(size, folder)
        sessions = [open_session(entry["onnx"], args.threads, idle_after_run=True) for entry in pair]
        inputs = [{s.get_inputs()[0].name: floats.numpy()} for s in sessions]

        def pair_onnx() -> None:
            for session, feed in zip(sessions, inputs):
                session.run(None, feed)

        def pair_eager() -> None:
            with torch.inference_mode():
                for entry in pair:
                    entry["model"](floats)

        for entry in pair:
            result["pair"][entry["name"]] = {"params": count_params([entry["model"]]),
                                             "gflops": round(_flops(entry["model"], floats) / 1e9, 2)}
        for name in args.only:
            overrides = VARIANTS[name]
            variant = mcn_variant(overrides, size, folder)
            session = open_session(variant["onnx"], args.threads, idle_after_run=True)
            feed = {session.get_inputs()[0].name: pixels}
            normalized = normalize_images(images).contiguous(memory_format=torch.channels_last)
            model = fold_batchnorms(variant["model"], normalized)[0].to(memory_format=torch.channels_last)

            def mcn_onnx() -> None:
                session.run(None, feed)

            def mcn_eager() -> None:
                with torch.inference_mode():
                    model(normalized)

            onnx_ms = [1000 * t for t in interleaved_medians(mcn_onnx, pair_onnx, args.runs, args.warmup)]
            eager_ms = [1000 * t for t in interleaved_medians(mcn_eager, pair_eager, args.runs, args.warmup)]
            row = {"overrides": overrides, "params": count_params([variant["model"]]),
                   "gflops": round(count_flops([variant["model"]], images) / 1e9, 2),
                   "onnx_fp32_ms": round(onnx_ms[0], 2), "pair_onnx_fp32_ms": round(onnx_ms[1], 2),
                   "onnx_fp32_ratio": round(onnx_ms[0] / onnx_ms[1], 3),
                   "eager_fp32_ms": round(eager_ms[0], 2), "pair_eager_fp32_ms": round(eager_ms[1], 2),
                   "eager_fp32_ratio": round(eager_ms[0] / eager_ms[1], 3)}
            result["mcn"][name] = row
            print(f"{name:<42} {row['gflops']:6.2f} GFLOPs  onnxruntime {row['onnx_fp32_ms']:6.1f} ms vs pair "
                  f"{row['pair_onnx_fp32_ms']:6.1f} ({row['onnx_fp32_ratio']:.3f})  eager {row['eager_fp32_ms']:6.1f} "
                  f"vs {row['pair_eager_fp32_ms']:6.1f} ({row['eager_fp32_ratio']:.3f})", flush=True)
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


def _flops(model: torch.nn.Module, images: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)
    return int(counter.get_total_flops())


if __name__ == "__main__":
    sys.exit(main())
