"""Training steps per second of the demo's network (``synth_seg_det_pose``: ResNet-18, 128 px,
batch 16) in one run, from the same initial weights and the same batches: eager bf16 autocast
+ channels-last (what ``precision: auto`` chose on every CPU with native bf16 until it learned
that only AMX makes bf16 faster), eager fp32, and ``torch.compile`` at the precision ``auto``
picks on this machine; and where an eager step spends its time (waiting for the data worker,
encoding targets, forward, loss, backward, optimizer), with the achieved FLOP rate beside the
bf16 and fp32 matmul peaks measured in the same run. Run it alone on the machine.

    python benchmarks/train_throughput.py --json benchmarks/results/train_throughput.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from deltalearn.bench import cpu_model
from deltalearn.bench.latency import matmul_peak_tflops
from deltalearn.config import PACKAGED_CONFIGS, load_config
from deltalearn.data.io import atomic_write_text
from deltalearn.data.synth import generate_people
from deltalearn.engine.distributed import make_loader
from deltalearn.engine.precision import autocast, prepare_model, resolve_precision
from deltalearn.engine.trainer import build_optimizer, default_param_groups, seed_everything
from deltalearn.mcn.backbones import normalize_images
from deltalearn.mcn.config import MCNConfig
from deltalearn.mcn.data import TrainCollate, open_coco, training_transforms
from deltalearn.mcn.train import model_info
from deltalearn.mcn.weights import build_model



def batches(config: MCNConfig, data: Path, model: nn.Module, count: int, seed: int) -> list:
    """``count`` training batches (targets encoded), drawn once so both modes see the same."""
    dataset = open_coco(data)
    dataset.transforms = training_transforms(config.data, dataset.keypoint_names)
    dataset.cache_samples = True
    loader = make_loader(dataset, config.train.batch_size, shuffle=True, seed=seed, drop_last=True, num_workers=0,
                         collate_fn=TrainCollate(model.encode))
    found = []
    while len(found) < count:
        for batch in loader:
            found.append(batch)
            if len(found) == count:
                break
    return found


def train_steps(model: nn.Module, network: nn.Module, config: MCNConfig, precision, batches: list,
                phases: bool = False) -> tuple[list[float], list[float], dict[str, list[float]]]:
    """Seconds and loss of each step; with ``phases`` also the seconds of forward, loss,
    backward and optimizer of each."""
    optimizer = build_optimizer(default_param_groups(model, config.train.weight_decay), config.train)
    times, losses = [], []
    split: dict[str, list[float]] = {"forward": [], "loss": [], "backward": [], "optimizer": []}
    model.train()
    for batch in batches:
        start = time.perf_counter()
        with autocast(precision):
            images = normalize_images(batch.images)
            if precision.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            outputs = network(images)
            forward = time.perf_counter()
            outputs = {key: value.float() for key, value in outputs.items()}
            terms = model.loss(outputs, batch.targets)
        loss_done = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        backward = time.perf_counter()
        nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        end = time.perf_counter()
        times.append(end - start)
        losses.append(float(terms["loss"].detach()))
        if phases:
            for name, seconds in (("forward", forward - start), ("loss", loss_done - forward),
                                  ("backward", backward - loss_done), ("optimizer", end - backward)):
                split[name].append(seconds)
    return times, losses, split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=120, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (compiling, for torch.compile)")
    parser.add_argument("--data", type=Path, default=Path("runs/throughput/data"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/train_throughput.json"))
    args = parser.parse_args()
    if not (args.data / "annotations.json").is_file():
        generate_people(args.data, num_images=400, size=128, seed=0, scene="simple")
    config = load_config(MCNConfig, PACKAGED_CONFIGS / "mcn" / "synth_seg_det_pose.yaml", ["data.workers=0"])
    seed_everything(0)
    info = model_info(config, open_coco(args.data))
    initial = build_model(info)
    precision = resolve_precision(config.train.precision, torch.device("cpu"), initial)
    total = args.warmup + args.steps
    first = prepare_model(copy.deepcopy(initial), precision)
    data = batches(config, args.data, first, total, seed=0)
    # target encoding: the collate step the data worker runs per batch, timed here in the main process
    dataset = open_coco(args.data)
    dataset.transforms = training_transforms(config.data, dataset.keypoint_names)
    samples = [dataset[i] for i in range(config.train.batch_size)]
    collate = TrainCollate(first.encode)
    encode = statistics.median([_timed(lambda: collate(samples)) for _ in range(10)])
    dataset.cache_samples = config.data.cache_samples
    first_load = _timed(lambda: [dataset[i] for i in range(config.train.batch_size, 2 * config.train.batch_size)])
    augment = statistics.median([_timed(lambda: [dataset[i] for i in range(config.train.batch_size, 2 * config.train.batch_size)])
                                 for _ in range(3)])  # from the sample cache, as the demo's config trains
    with FlopCounterMode(display=False) as counter:  # one step's forward and backward
        train_steps(first, first, config, precision, data[:1])
    step_flops = counter.get_total_flops()
    result: dict = {"command": "python " + " ".join(sys.argv), "cpu": cpu_model(), "torch": torch.__version__,
                    "steps": args.steps, "warmup": args.warmup, "batch": config.train.batch_size,
                    "step_gflops": round(step_flops / 1e9, 1), "modes": {}}
    auto = resolve_precision("auto", torch.device("cpu"), initial)
    result["auto_precision"] = auto.name
    modes = {"eager_bf16": (resolve_precision("bf16", torch.device("cpu"), initial), False),
             "eager_fp32": (resolve_precision("fp32", torch.device("cpu"), initial), False),
             f"compile_{auto.name}": (auto, True)}
    for mode, (mode_precision, compiled) in modes.items():
        model = prepare_model(copy.deepcopy(initial), mode_precision)
        network = torch.compile(model) if compiled else model
        started = time.perf_counter()
        times, losses, split = train_steps(model, network, config, mode_precision, data, phases=not compiled)
        timed = times[args.warmup:]
        row = {"precision": mode_precision.name, "channels_last": mode_precision.channels_last,
               "steps_per_s": round(len(timed) / sum(timed), 3), "median_step_ms": round(1e3 * statistics.median(timed), 1),
               "first_steps_s": round(sum(times[:args.warmup]), 1), "wall_s": round(time.perf_counter() - started, 1),
               "loss_first": round(statistics.mean(losses[:10]), 4), "loss_last": round(statistics.mean(losses[-20:]), 4),
               "losses": [round(v, 4) for v in losses]}
        row["tflops"] = round(step_flops / statistics.median(timed) / 1e12, 3)
        if not compiled:
            row["phases_ms"] = {name: round(1e3 * statistics.median(values[args.warmup:]), 1) for name, values in split.items()}
        result["modes"][mode] = row
        print(f"{mode:<13} {row['steps_per_s']:.2f} steps/s (median {row['median_step_ms']} ms, first "
              f"{args.warmup} steps {row['first_steps_s']} s), {row['tflops']} TFLOP/s, loss "
              f"{row['loss_first']} -> {row['loss_last']}", flush=True)
    result["data_ms"] = {"decode_and_augment_batch": round(1e3 * first_load, 1), "augment_cached_batch": round(1e3 * augment, 1),
                         "encode_targets_batch": round(1e3 * encode, 1)}
    result["bf16_matmul_peak_tflops"] = round(matmul_peak_tflops(torch.bfloat16), 3)
    result["fp32_matmul_peak_tflops"] = round(matmul_peak_tflops(torch.float32), 3)
    reference = result["modes"]["eager_bf16"]["steps_per_s"]
    result["speedup_over_eager_bf16"] = {mode: round(row["steps_per_s"] / reference, 3)
                                         for mode, row in result["modes"].items()}
    print(f"phases of an eager step (ms): { {m: r['phases_ms'] for m, r in result['modes'].items() if 'phases_ms' in r} }; "
          f"data per batch (ms, worker): {result['data_ms']}; matmul peaks (TFLOP/s) bf16 "
          f"{result['bf16_matmul_peak_tflops']}, fp32 {result['fp32_matmul_peak_tflops']}; steps/s against eager "
          f"bf16: {result['speedup_over_eager_bf16']}")
    atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


def _timed(func) -> float:  # noqa: ANN001
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
