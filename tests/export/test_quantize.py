"""Static INT8 quantization: close to fp32, its metric change reported."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from deltalearn.cli import main
from deltalearn.export.runtime import OnnxPredictor
from deltalearn.mcn.data import EvalDataset, collate_eval, open_coco
from deltalearn.mcn.evaluate import evaluate

from .settings import SHAPES, SIZE, eager_and_onnx


def test_int8_is_quantized_close_and_its_metric_change_is_reported(run: Path, data: Path, exported: dict[str, Path],
                                                                    tmp_path: Path, capsys):
    int8 = tmp_path / "int8.onnx"
    assert main(["mcn", "export", "--weights", str(run), "--out", str(int8), "--int8", "--calib",
                 str(data / "images")]) == 0
    assert "calibrated on 8 image(s)" in capsys.readouterr().out
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
    dataset = open_coco(data)
    metrics = {}
    for name, path in (("fp32", exported["raw"]), ("int8", int8)):
        loader = torch.utils.data.DataLoader(EvalDataset(dataset, SIZE), batch_size=4, collate_fn=collate_eval)
        metrics[name] = evaluate(OnnxPredictor(path), loader, dataset.coco)
    assert set(metrics["int8"]) == {"det_ap", "det_ap50", "pose_ap", "pose_ap50", "seg_iou", "seg_miou"}
    with capsys.disabled():  # reported, not hidden
        print("\nINT8 metric change on the training images (fp32 -> int8): " + ", ".join(
            f"{k} {metrics['fp32'][k]:.3f} -> {metrics['int8'][k]:.3f}" for k in sorted(metrics["fp32"])))
    assert abs(metrics["int8"]["seg_miou"] - metrics["fp32"]["seg_miou"]) < 0.1

