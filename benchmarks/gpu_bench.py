"""The multitask claim on a GPU: one Multitask CenterNet against the composition of single-task
networks (as ``deltalearn mcn bench`` builds them), timed on CUDA.

    python benchmarks/gpu_bench.py --json benchmarks/results/gpu_bench.json
    python benchmarks/gpu_bench.py --configs synth_seg_det_pose_mobile --batches 1 --paths eager_bf16

Paths, each for both sides and every batch size:

  eager_fp32       PyTorch eager, float32 (TF32 matmuls off: true fp32)
  eager_bf16       bf16 autocast + channels-last, as the predictor runs on a GPU
  eager_bf16_nchw  bf16 autocast in the default memory layout (which of the two costs what)
  compiled_bf16    the same model under ``torch.compile`` (default mode)
  onnxruntime_cuda the exported raw-output graph in onnxruntime's CUDA provider, where installed

A GPU runs work asynchronously: every timed call ends with ``torch.cuda.synchronize``, and the
multitask network and the composition alternate (as in ``mcn bench``) after warm-up; medians
count. The host-to-device copy of the uint8 input is part of every call, as in ``predict``.
Decoding (the project's PyTorch decoding of the raw outputs, on the GPU) is timed on its own.
The bf16 matmul peak of the same GPU is measured in the same run. Weights are random.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from deltalearn.bench import cpu_model
from deltalearn.bench.latency import count_flops, count_params, interleaved_times
from deltalearn.bench.workload import bench_images, network_infos
from deltalearn.config import find_config, load_config
from deltalearn.data.io import atomic_write_text
from deltalearn.engine.precision import resolve_precision
from deltalearn.mcn.config import MCNConfig
from deltalearn.mcn.predictor import TorchPredictor
from deltalearn.mcn.weights import build_model

DEVICE = "cuda"  # --cpu-smoke: "cpu", to try the script where there is no GPU
PATHS = ("eager_fp32", "eager_bf16", "eager_bf16_nchw", "compiled_bf16", "onnxruntime_cuda")
DEFAULT_CONFIGS = ("coco_person_seg_det_pose", "coco_person_seg_det_pose_mobile")


def cuda_matmul_tflops(dtype: torch.dtype, side: int = 8192, runs: int = 10) -> float:
    a, b = (torch.randn(side, side, device="cuda", dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(runs):
        a @ b
    torch.cuda.synchronize()
    return 2 * side**3 * runs / (time.perf_counter() - start) / 1e12


def synced(func: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        func()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return call


def torch_runners(path: str, models: list[torch.nn.Module], infos: list, images: torch.Tensor) -> Callable[[], None]:
    precision = resolve_precision("fp32" if path == "eager_fp32" else "bf16", DEVICE, models[0])
    if path == "eager_bf16_nchw":
        precision = dataclasses.replace(precision, channels_last=False)
    predictors = [TorchPredictor(copy.deepcopy(m), info, precision=precision) for m, info in zip(models, infos)]
    if path == "compiled_bf16":
        for p in predictors:
            p.model = torch.compile(p.model)
    return synced(lambda: [p.outputs(images) for p in predictors])


def onnx_runners(models: list[torch.nn.Module], infos: list, images: torch.Tensor, folder: Path,
                 side: str) -> Callable[[], None]:
    import onnxruntime

    from deltalearn.export.onnx import export_onnx

    sessions = []
    for index, (model, info) in enumerate(zip(models, infos)):
        file = folder / f"{side}_{index}.onnx"
        if not file.is_file():  # one export per network, whatever the batch size
            export_onnx(model, info, file)
        sessions.append(onnxruntime.InferenceSession(str(file), providers=["CUDAExecutionProvider"]))
    feed = images.numpy()
    return lambda: [s.run(None, {s.get_inputs()[0].name: feed}) for s in sessions]


def time_config(name: str, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    config = load_config(MCNConfig, find_config(name, "mcn"))
    multitask, singles = network_infos(config, args.size)
    sides = {"multitask": [multitask], "composition": singles}
    models = {side: [build_model(info).eval() for info in infos] for side, infos in sides.items()}
    probe = bench_images(1, args.size)
    found: dict[str, Any] = {
        "backbone": config.model.backbone, "tasks": list(config.model.tasks),
        "head_channels": config.model.head_channels, "head_conv": config.model.head_conv,
        "multitask_params": count_params(models["multitask"]), "composition_params": count_params(models["composition"]),
        "multitask_gflops": count_flops(models["multitask"], probe) / 1e9,
        "composition_gflops": count_flops(models["composition"], probe) / 1e9,
        "batches": {},
    }
    found["param_ratio"] = found["multitask_params"] / found["composition_params"]
    ort_ok = False
    try:
        import onnxruntime
        ort_ok = DEVICE == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="gpu_bench_") as tmp:
        for batch in args.batches:
            images = bench_images(batch, args.size)
            rows: dict[str, Any] = {}
            for path in args.paths:
                if path == "onnxruntime_cuda" and not ort_ok:
                    rows[path] = {"skipped": "onnxruntime has no CUDAExecutionProvider here"}
                    continue
                log(f"{name} batch {batch} {path}")
                try:
                    if path == "onnxruntime_cuda":
                        runs = [onnx_runners(models[s], sides[s], images, Path(tmp), s) for s in sides]
                    else:
                        runs = [torch_runners(path, models[s], sides[s], images) for s in sides]
                    started = time.perf_counter()
                    mt, comp = interleaved_times(*runs, runs=args.runs, warmup=args.warmup)
                except Exception as error:  # noqa: BLE001 - one path failing must not lose the others
                    rows[path] = {"error": f"{type(error).__name__}: {error}"[:400]}
                    log(f"  failed: {rows[path]['error']}")
                    continue
                mt_ms, comp_ms = 1e3 * statistics.median(mt), 1e3 * statistics.median(comp)
                rows[path] = {"multitask_ms": mt_ms, "composition_ms": comp_ms, "latency_ratio": mt_ms / comp_ms,
                              "multitask_images_per_s": 1e3 * batch / mt_ms,
                              "seconds_incl_warmup": round(time.perf_counter() - started, 1)}
                log(f"  multitask {mt_ms:.2f} ms, composition {comp_ms:.2f} ms, ratio {mt_ms / comp_ms:.3f}")
            decode_predictor = TorchPredictor(models["multitask"][0], multitask, precision="bf16", device=DEVICE)
            outputs = decode_predictor.outputs(images)
            decode = interleaved_times(synced(lambda: decode_predictor.decode_outputs(outputs)),
                                       synced(lambda: decode_predictor.outputs(images)), args.runs, args.warmup)
            rows["decode_ms"] = 1e3 * statistics.median(decode[0])
            rows["decode_share_of_eager_bf16"] = statistics.median(decode[0]) / statistics.median(decode[1])
            found["batches"][str(batch)] = rows
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", type=Path, default=Path("gpu_bench.json"))
    parser.add_argument("--cpu-smoke", action="store_true", help="run on the CPU: checks the script, times nothing useful")
    args = parser.parse_args()
    global DEVICE
    if args.cpu_smoke:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        print("error: gpu_bench needs a CUDA device (or --cpu-smoke)", file=sys.stderr)
        sys.exit(2)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    result: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "gpu": torch.cuda.get_device_name() if DEVICE == "cuda" else None, "cpu": cpu_model(),
        "torch": torch.__version__, "size": args.size, "runs": args.runs, "warmup": args.warmup,
        "configs": {},
    }
    if DEVICE == "cuda":
        result["matmul_peak_tflops"] = {"bf16": cuda_matmul_tflops(torch.bfloat16),
                                        "fp32": cuda_matmul_tflops(torch.float32)}
        print(f"{result['gpu']}: bf16 matmul {result['matmul_peak_tflops']['bf16']:.0f} TFLOP/s", flush=True)
    for name in args.configs:
        result["configs"][name] = time_config(name, args, lambda line: print(line, flush=True))
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
