"""How the benchmark counts and times, and the JSON of deltalearn mcn bench. Timings are never asserted (benchmarks/ measures them); what is counted is checked exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from deltalearn.bench import (
    count_flops,
    count_params,
    format_report,
    interleaved_medians,
    interleaved_times,
    network_infos,
)
from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.mcn.config import ModelConfig
from deltalearn.mcn.model import build_mcn
from deltalearn.mcn.weights import build_model

from .tiny import tiny_config

TINY = ["model.backbone=resnet18", "model.neck_channels=16", "model.head_channels=16"]


def test_counts_parameters_and_flops_exactly():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    assert count_params([conv, conv]) == 2 * (8 * 3 * 9 + 8)
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    assert count_flops([conv], images) == 2 * (2 * 8 * 8) * 8 * 3 * 9  # 2 per multiply-add, per output value
    multitask, singles = network_infos(tiny_config(["det", "seg"]), 64)
    models = [build_model(info) for info in singles]
    separate = [build_mcn(ModelConfig("resnet18", tasks=[task], neck_channels=16, head_channels=16))
                for task in ("det", "seg")]
    assert count_params(models) == count_params(separate)
    assert count_params([build_model(multitask)]) < 0.55 * count_params(models)  # one backbone instead of two


def test_interleaving_alternates_the_order_and_skips_warmup():
    calls = []
    first, second = (lambda: calls.append("a")), (lambda: calls.append("b"))
    medians = interleaved_medians(first, second, runs=3, warmup=1)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert all(m >= 0 for m in medians)
    calls.clear()
    times = interleaved_times(first, second, runs=2, warmup=1)  # per-round times, for paired differences
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert [len(t) for t in times] == [2, 2] and all(t >= 0 for side in times for t in side)


def test_bench_command_writes_the_contract_keys(tmp_path: Path, capsys):
    out = tmp_path / "bench.json"
    args = ["mcn", "bench", "--size", "64", "--runs", "2", "--warmup", "1", "--no-memory", "--json", str(out),
            "--paths", "eager_fp32,onnxruntime_fp32", *TINY]
    assert main(args) == 0
    result = json.loads(out.read_text())
    for key in ("multitask_ms", "composition_ms", "latency_ratio", "multitask_params", "composition_params",
                "param_ratio", "multitask_gflops", "decode_share", "decode_where", "matmul_peak_tflops",
                "speedup_vs_eager_fp32"):
        assert key in result, key
    tasks = ("det", "seg", "pose")
    expected = {"multitask": count_params([build_mcn(ModelConfig("resnet18", tasks=list(tasks), neck_channels=16,
                                                                 head_channels=16))]),
                "composition": count_params([build_mcn(ModelConfig("resnet18", tasks=list(t), neck_channels=16,
                                                                   head_channels=16))
                                             for t in (("det",), ("seg",), ("det", "pose"))])}
    assert result["multitask_params"] == expected["multitask"]
    assert result["composition_params"] == expected["composition"]
    assert result["param_ratio"] == pytest.approx(expected["multitask"] / expected["composition"])
    assert set(result["paths"]) == {"eager_fp32", "onnxruntime_fp32"} and result["path"] in result["paths"]
    timed = result["paths"][result["path"]]
    assert result["latency_ratio"] == pytest.approx(timed["multitask_ms"] / timed["composition_ms"])
    assert "decode_in_graph_ms" in result["paths"]["onnxruntime_fp32"]
    assert "decode_in_graph_ms" not in result["paths"]["eager_fp32"]
    assert result["setup"]["head_channels"] == 16 and result["setup"]["neck_channels"] == 16
    assert (result["setup"]["head_conv"], result["setup"]["head_trunk"]) == ("dense", "per_output")
    assert set(result["targets"]) == {"latency_ratio", "param_ratio", "decode_share", "fraction_of_bf16_peak",
                                      "speedup_vs_eager_fp32"}
    report = capsys.readouterr().out
    assert "| onnxruntime_fp32 |" in report and report.strip().endswith(format_report(result).strip().splitlines()[-1])
    assert main(["mcn", "bench", "--size", "100", *TINY]) == EXIT_BAD_INPUT
    assert "multiple of 32" in capsys.readouterr().err

