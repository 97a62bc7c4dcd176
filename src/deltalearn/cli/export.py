"""``deltalearn mcn export`` and ``deltalearn mcn bench``; ``register`` adds them to the
subcommands of ``deltalearn mcn``."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ..bench import PATHS, BenchSettings, format_report, run_benchmark
from ..config import find_config, load_config
from ..data.io import atomic_write_text
from ..data.errors import DataError
from ..export.accuracy import compare_accuracy, format_accuracy
from ..export.onnx import INPUT_MULTIPLE, export_onnx, trace_side
from ..export.quantize import CALIBRATION_IMAGES, calibration_batches, quantize_int8
from ..export.runtime import DECISION_TOLERANCE, EXPORT_TOLERANCE, OnnxPredictor, verify_export
from ..mcn.config import MCNConfig
from ..mcn.predictor import TorchPredictor
from ..mcn.weights import load_model

EXPORT_BATCH_CHECK = 2  # images per verification run of an export
ACCURACY_SUFFIX = ".accuracy.json"  # beside the .onnx: --val's metrics before and after


def _cmd_export(args: argparse.Namespace) -> int:
    if args.out.suffix.lower() != ".onnx":
        raise ValueError(f"{args.out}: the output file must end in .onnx")
    if args.int8 != (args.calib is not None):
        raise ValueError("--int8 and --calib DIR go together: INT8 ranges are calibrated on the images in DIR")
    if args.val is not None and not (args.val / "annotations.json").is_file():
        raise DataError(args.val, "--val needs a data folder with annotations.json and images/")
    model, info = load_model(args.weights)  # a checkpoint that does not fit its config fails here
    calibration = calibration_batches(args.calib, info.config.data.image_size, args.calib_images) if args.int8 else []
    size = trace_side(model.output_stride, info.config.data.image_size)  # of the verification inputs
    with tempfile.TemporaryDirectory(prefix="mcn_export_") as tmp:
        fp32 = Path(tmp) / "fp32.onnx" if args.int8 else args.out
        export = export_onnx(model, info, fp32, decode=args.decode)
        sizes = [(EXPORT_BATCH_CHECK, size, size), (1, size + 2 * INPUT_MULTIPLE, size)]
        worst = verify_export(model, fp32, sizes)
        if args.int8:
            export = quantize_int8(fp32, args.out, calibration)
        if args.val is not None:  # what the export costs: fp32 graph against INT8, or PyTorch against the graph
            before = OnnxPredictor(fp32) if args.int8 else TorchPredictor(model, info, precision="fp32")
            after = OnnxPredictor(args.out)
            accuracy = compare_accuracy({"fp32": before, "int8": after} if args.int8 else
                                        {"pytorch": before, "onnx": after}, args.val, batch_size=args.batch_size)
    shapes = ", ".join(f"{b}x3x{h}x{w}" for b, h, w in sizes)
    largest = max(worst, key=worst.get)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB): tasks {list(model.tasks)}, "
          f"{'decoded results' if export.decoded else 'raw outputs'} {', '.join(export.outputs)}; "
          f"input uint8 [batch, 3, height, width], height and width multiples of {INPUT_MULTIPLE}")
    measure = ("share of differing result elements", DECISION_TOLERANCE) if export.decoded else \
        ("largest difference relative to the output's range", EXPORT_TOLERANCE)
    print(f"onnx.checker passed; onnxruntime fp32 vs PyTorch on {shapes}: {measure[0]} {worst[largest]:.2e} "
          f"({largest}; tolerance {measure[1]:g})")
    if args.int8:
        print(f"INT8: calibrated on {export.calibration_images} image(s) from {args.calib}"
              + ("" if args.val else f"; measure its accuracy with --val DIR, or 'deltalearn mcn eval --weights "
                                     f"{args.out} --data VAL'"))
    if args.val is not None:
        report = args.out.with_suffix(ACCURACY_SUFFIX)
        atomic_write_text(report, json.dumps({"weights": str(args.weights), "onnx": str(args.out),
                                              "int8": args.int8, **accuracy}, indent=2) + "\n")
        print(format_accuracy(accuracy))
        print(f"wrote {report}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.size % 32 or args.size < 64:
        raise ValueError(f"--size {args.size}: must be a multiple of 32, at least 64")
    config = load_config(MCNConfig, find_config(args.config, "mcn"), args.overrides)
    settings = BenchSettings(size=args.size, batch=args.batch, runs=args.runs, warmup=args.warmup,
                             paths=args.paths, memory=not args.no_memory)
    if args.threads:
        settings.threads = args.threads
    result = run_benchmark(config, settings)
    print(format_report(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    return 0


def _paths(text: str) -> tuple[str, ...]:
    paths = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in paths if p not in PATHS]
    if unknown or not paths:
        raise argparse.ArgumentTypeError(f"unknown paths {unknown}; choose from {','.join(PATHS)}")
    return paths


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``export`` and ``bench`` to the subcommands of ``deltalearn mcn``."""
    export = commands.add_parser("export", help="export trained weights to ONNX (optionally INT8, with decoding)")
    export.add_argument("--weights", type=Path, required=True,
                        help="run folder (best, else last weights) or .safetensors")
    export.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    export.add_argument("--decode", action="store_true",
                        help="put decoding (peak test, top-K, boxes, keypoints, label map) inside the graph")
    export.add_argument("--int8", action="store_true", help="static INT8 quantization (needs --calib)")
    export.add_argument("--calib", type=Path, help="folder of images that calibrate the INT8 ranges")
    export.add_argument("--calib-images", type=int, default=CALIBRATION_IMAGES,
                        help=f"calibration images taken from --calib (default {CALIBRATION_IMAGES})")
    export.add_argument("--val", type=Path, metavar="DIR",
                        help="data folder (annotations.json, images/) to score each head before and after: fp32 "
                             f"against INT8 with --int8, else PyTorch against ONNX; printed and written to "
                             f"OUT with the suffix {ACCURACY_SUFFIX}")
    export.add_argument("--batch-size", type=int, default=8, help="images per forward pass with --val (default 8)")
    export.set_defaults(func=_cmd_export)

    bench = commands.add_parser("bench", help="time the multitask network against its single-task composition")
    bench.add_argument("--config", type=Path, help="YAML file or shipped config name (default: DLA-34, det+seg+pose)")
    bench.add_argument("--size", type=int, default=512, help="input side in px (default 512)")
    bench.add_argument("--json", type=Path, help="also write the result to this JSON file")
    bench.add_argument("--batch", type=int, default=1, help="images per forward pass (default 1)")
    bench.add_argument("--runs", type=int, default=30, help="timed runs per path and side (default 30)")
    bench.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    bench.add_argument("--paths", type=_paths, default=PATHS,
                       help=f"comma-separated runtime paths (default all: {','.join(PATHS)})")
    bench.add_argument("--threads", type=int, default=0, help="intra-op threads (default: torch's)")
    bench.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    bench.add_argument("overrides", nargs="*", metavar="key=value",
                       help="config overrides, e.g. model.head_channels=256")
    bench.set_defaults(func=_cmd_bench)
