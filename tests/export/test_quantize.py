"""Static INT8 quantization: close to fp32, its metric change reported."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.export.runtime import OnnxPredictor
from deltalearn.mcn.data import EvalDataset, collate_eval, open_coco
from deltalearn.mcn.evaluate import evaluate

from .settings import SHAPES, SIZE, TINY, eager_and_onnx


def test_int8_is_quantized_close_and_its_metric_change_is_reported(run: Path, data: Path, exported: dict[str, Path],
                                                                    tmp_path: Path, capsys):
    int8 = tmp_path / "int8.onnx"
    assert main(["mcn", "export", "--weights", str(run), "--out", str(int8), "--int8", "--calib",
                 str(data / "images"), "--val", str(data)]) == 0
    printed = capsys.readouterr().out
    assert "calibrated on 8 image(s)" in printed
    report = json.loads((tmp_path / "int8.accuracy.json").read_text())
    assert report["int8"] is True and report["images"] == 8 and set(report["heads"]) == {"det", "seg", "pose"}
    for task, keys in (("det", ("det_ap", "det_ap50")), ("seg", ("seg_iou", "seg_miou")), ("pose", ("pose_ap",))):
        for key in keys:
            row = report["heads"][task][key]
            assert row["change"] == pytest.approx(row["int8"] - row["fp32"])
            assert f"{task:<6}{key:<11}{100 * row['fp32']:9.1f}{100 * row['int8']:9.1f}" in printed
    proto = onnx.load(str(int8))
    onnx.checker.check_model(proto)
    assert sum(node.op_type == "QuantizeLinear" for node in proto.graph.node) > 10
    producer = {output: node.op_type for node in proto.graph.node for output in node.output}
    assert {producer[output.name] for output in proto.graph.output} == {"Conv"}  # the heads' output convs stay float
    assert int8.stat().st_size < 0.4 * exported["raw"].stat().st_size
    reference, found = eager_and_onnx(run, int8, SHAPES[0])
    for name in ("det.heatmap", "seg.logits", "pose.heatmap"):
        error = (found[name] - reference[name]).abs().mean() / reference[name].abs().mean()
        assert error < 0.1, (name, float(error))  # INT8 rounding, not a broken graph
    dataset = open_coco(data)  # the fp32 graph's metrics in the report are those of the exported fp32 graph
    loader = torch.utils.data.DataLoader(EvalDataset(dataset, SIZE), batch_size=4, collate_fn=collate_eval)
    fp32 = evaluate(OnnxPredictor(exported["raw"]), loader, dataset.coco)
    assert fp32 == pytest.approx(report["metrics"]["fp32"], abs=1e-6)
    with capsys.disabled():  # reported, not hidden
        print("\nINT8 metric change on the training images (fp32 -> int8): " + ", ".join(
            f"{k} {report['metrics']['fp32'][k]:.3f} -> {report['metrics']['int8'][k]:.3f}" for k in sorted(fp32)))
    assert abs(report["heads"]["seg"]["seg_miou"]["change"]) < 0.1


def test_export_val_compares_pytorch_with_onnx_and_rejects_a_folder_without_annotations(run: Path, data: Path,
                                                                                         tmp_path: Path, capsys):
    out = tmp_path / "fp32.onnx"
    assert main(["mcn", "export", "--weights", str(run), "--out", str(out), "--val", str(data)]) == 0
    report = json.loads((tmp_path / "fp32.accuracy.json").read_text())
    for metrics in report["heads"].values():
        for row in metrics.values():
            assert set(row) == {"pytorch", "onnx", "change"} and abs(row["change"]) < 0.02  # fp32 export: same results
    capsys.readouterr()
    assert main(["mcn", "export", "--weights", str(run), "--out", str(tmp_path / "x.onnx"), "--val",
                 str(data / "images")]) == EXIT_BAD_INPUT
    assert "annotations.json" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_separable_per_task_heads_export_and_quantize(data: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    assert main(["mcn", "train", "--data", str(data), "--out", str(run), *TINY, "train.epochs=2",
                 "model.head_conv=separable", "model.head_trunk=per_task"]) == 0
    assert "no scores: no validation set (give --val-data" in capsys.readouterr().out  # not a row of dashes
    for extra in ([], ["--decode"], ["--int8", "--calib", str(data / "images")]):
        out = tmp_path / f"model{len(extra)}.onnx"
        assert main(["mcn", "export", "--weights", str(run), "--out", str(out), *extra]) == 0  # verified inside
    proto = onnx.load(str(tmp_path / "model3.onnx"))
    depthwise = [node for node in proto.graph.node if node.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in node.attribute)]
    assert len(depthwise) == 3  # one per task
    assert "onnx.checker passed" in capsys.readouterr().out
