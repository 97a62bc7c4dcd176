"""Eager fp32 on the CPU: the default memory layout against channels-last, and batch norms
folded into the convolutions, for the MCN networks and (when ultralytics is installed) the
YOLO11n-seg + YOLO11n-pose pair.

Inference: 1 x 3 x SIZE x SIZE, random weights, the raw outputs; each variant runs alternately
with the NCHW one (``interleaved_medians``) and its outputs are compared with it. Training: one
AdamW step of batch 16 at 128 px on the sum of squared outputs (the layout's cost is in the
convolutions, so the loss need not be the real one). Run it alone on the machine.

    python benchmarks/channels_last.py --json benchmarks/results/channels_last.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from deltalearn.bench import cpu_model
from deltalearn.bench.latency import interleaved_medians
from deltalearn.bench.workload import network_infos
from deltalearn.config import load_config
from deltalearn.data.io import atomic_write_text
from deltalearn.engine.fuse import fold_batchnorms, output_tensors
from deltalearn.mcn.config import MCNConfig
from deltalearn.mcn.weights import build_model

NETWORKS = {  # name: config overrides of the three-task MCN
    "MobileNetV3 (the *_mobile configs)": ["model.backbone=mobilenetv3_large_100", "model.head_conv=separable",
                                           "model.head_trunk=per_task", "model.head_channels=32"],
    "ResNet-18 (the synth configs)": ["model.backbone=resnet18"],
    "DLA-34 (CenterNet's)": [],
}
CL = torch.channels_last


def mcn(overrides: list[str], size: int) -> nn.Module:
    config = load_config(MCNConfig, None, [*overrides, "model.tasks=[det,seg,pose]", f"data.image_size={size}"])
    return build_model(network_infos(config, size)[0]).float()


def max_difference(first: object, second: object) -> float:
    return max((a.float() - b.float()).abs().max().item()
               for a, b in zip(output_tensors(first), output_tensors(second)) if a.numel())


def inference_row(model: nn.Module, images: torch.Tensor, runs: int, warmup: int) -> dict:
    """NCHW against channels-last, and channels-last with folded norms, each run alternately with NCHW."""
    nchw = model.eval()
    folded, count = fold_batchnorms(nchw, images)
    variants = {"channels_last": copy.deepcopy(nchw).to(memory_format=CL), "channels_last_folded": folded.to(memory_format=CL)}
    cl_images = images.contiguous(memory_format=CL)
    row: dict = {"folded_norms": count}
    with torch.inference_mode():
        reference = nchw(images)
        for name, variant in variants.items():
            row[f"{name}_max_difference"] = max_difference(reference, variant(cl_images))
            first, second = interleaved_medians(lambda: nchw(images), lambda v=variant: v(cl_images), runs, warmup)
            row[f"nchw_ms_beside_{name}"] = round(1000 * first, 2)
            row[f"{name}_ms"] = round(1000 * second, 2)
            row[f"{name}_speedup"] = round(first / second, 3)
    row["nchw_ms"] = row["nchw_ms_beside_channels_last"]
    return row


def training_row(model: nn.Module, runs: int, warmup: int, batch: int = 16, size: int = 128) -> dict:
    sides = {"nchw": copy.deepcopy(model).train(), "channels_last": copy.deepcopy(model).train().to(memory_format=CL)}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in sides.items()}
    images = torch.randn(batch, 3, size, size)
    inputs = {"nchw": images, "channels_last": images.contiguous(memory_format=CL)}

    def step(name: str) -> None:
        loss = sum(v.float().square().mean() for v in output_tensors(sides[name](inputs[name])))
        optimizers[name].zero_grad()
        loss.backward()
        optimizers[name].step()

    first, second = interleaved_medians(lambda: step("nchw"), lambda: step("channels_last"), runs, warmup)
    return {"nchw_ms": round(1000 * first, 1), "channels_last_ms": round(1000 * second, 1),
            "speedup": round(first / second, 3), "batch": batch, "size": size}


def yolo_pair(size: int) -> dict[str, nn.Module]:
    from ultralytics import YOLO

    models = {}
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder), contextlib.redirect_stdout(io.StringIO()):
        for name in ("yolo11n-seg.yaml", "yolo11n-pose.yaml"):
            models[name] = YOLO(name).model.fuse().float().eval()  # fused: its predictor's form
    return models


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="inference image side")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--train-runs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-yolo", action="store_true", help="skip the YOLO pair")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/channels_last.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(1, 3, args.size, args.size)
    result: dict = {"command": "python " + shlex.join(sys.argv), "cpu": cpu_model(), "cores": os.cpu_count(),
                    "threads": args.threads, "size": args.size, "torch": torch.__version__,
                    "inference": {}, "training": {}}
    for name, overrides in NETWORKS.items():
        model = mcn(overrides, args.size)
        result["inference"][name] = row = inference_row(model, images, args.runs, args.warmup)
        print(f"{name:<36} inference nchw {row['nchw_ms']:6.1f} ms, channels-last {row['channels_last_ms']:6.1f} "
              f"({row['channels_last_speedup']:.2f}x), + folded norms {row['channels_last_folded_ms']:6.1f} "
              f"({row['channels_last_folded_speedup']:.2f}x)", flush=True)
        result["training"][name] = row = training_row(mcn(overrides, 128), args.train_runs, 2)
        print(f"{name:<36} training step nchw {row['nchw_ms']:6.0f} ms, channels-last {row['channels_last_ms']:6.0f} "
              f"({row['speedup']:.2f}x)", flush=True)
    if not args.no_yolo:
        images01 = torch.rand(1, 3, args.size, args.size)  # YOLO's input: RGB in [0, 1]
        for name, model in yolo_pair(args.size).items():
            result["inference"][name] = row = inference_row(model, images01, args.runs, args.warmup)
            print(f"{name:<36} inference nchw {row['nchw_ms']:6.1f} ms, channels-last {row['channels_last_ms']:6.1f} "
                  f"({row['channels_last_speedup']:.2f}x) (its norms are folded by ultralytics)", flush=True)
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
