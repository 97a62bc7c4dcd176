"""The onnxruntime predictor: tolerances that catch a wrong output, the same predictions and decoded results as the PyTorch predictor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deltalearn.cli import main
from deltalearn.export.runtime import OnnxPredictor, output_differences, within_tolerance
from deltalearn.mcn.data import EvalDataset, open_coco
from deltalearn.mcn.predictor import TorchPredictor
from deltalearn.mcn.weights import load_model

from .settings import SIZE


def test_output_differences_catch_a_wrong_output():
    reference = {"det.boxes": torch.zeros(1, 3, 4), "det.scores": torch.tensor([[0.9, 0.5, 0.01]]),
                 "seg.labels": torch.zeros(1, 4, 4, dtype=torch.int64)}
    found = {k: v.clone() for k, v in reference.items()}
    found["det.boxes"][0, 2] = 50.0  # below the score threshold: not compared
    assert within_tolerance(output_differences(reference, found, decoded=True), decoded=True)
    found["det.boxes"][0, 1, 0] = 0.5
    found["seg.labels"][0, 0, 0] = 1
    differences = output_differences(reference, found, decoded=True)
    assert differences["det.boxes"] == pytest.approx(1 / 8) and differences["seg.labels"] == pytest.approx(1 / 16)
    assert not within_tolerance(differences, decoded=True)
    raw = {"det.heatmap": torch.full((1, 1, 2, 2), 4.0)}
    assert output_differences(raw, {"det.heatmap": raw["det.heatmap"] + 0.002}, decoded=False)["det.heatmap"] == \
        pytest.approx(0.0005, rel=1e-3)
    assert not within_tolerance({"det.heatmap": 0.0005}, decoded=False)


def test_predict_through_onnxruntime_writes_the_same_predictions(run: Path, data: Path, exported: dict[str, Path],
                                                                  tmp_path: Path):
    source = data / "images"
    outs = {name: tmp_path / name for name in ("torch", "raw", "decoded")}
    assert main(["mcn", "predict", "--weights", str(run), "--precision", "fp32", "--source", str(source),
                 "--out", str(outs["torch"]), "--score", "0.1"]) == 0
    for name in ("raw", "decoded"):
        assert main(["mcn", "predict", "--weights", str(exported[name]), "--source", str(source),
                     "--out", str(outs[name]), "--score", "0.1"]) == 0
    expected = json.loads((outs["torch"] / "predictions.json").read_text())
    assert {e["task"] for e in expected} >= {"det", "pose"}  # seg finds nothing yet after 24 steps
    for name in ("raw", "decoded"):
        found = json.loads((outs[name] / "predictions.json").read_text())
        assert len(found) == len(expected), name
        for a, b in zip(expected, found):
            assert {k: v for k, v in a.items() if k not in ("bbox", "score", "keypoints")} == \
                   {k: v for k, v in b.items() if k not in ("bbox", "score", "keypoints")}
            assert b["score"] == pytest.approx(a["score"], abs=1e-5)
            for key in ("bbox", "keypoints"):
                if key in a:
                    assert np.allclose(a[key], b[key], atol=0.02), (name, key)
        drawings = sorted(p.name for p in outs[name].glob("*.png"))
        assert drawings == sorted(p.name for p in outs["torch"].glob("*.png")) and len(drawings) == 8
        for drawing in drawings:
            a, b = (np.asarray(Image.open(folder / drawing), dtype=np.int16) for folder in (outs["torch"], outs[name]))
            assert (a != b).any(axis=-1).mean() < 0.001, (name, drawing)


def test_onnx_predictor_mirrors_the_pytorch_one(run: Path, data: Path, exported: dict[str, Path]):
    model, info = load_model(run)
    samples = [EvalDataset(open_coco(data), SIZE)[i].sample for i in range(3)]
    torch_side = TorchPredictor(model, info, precision="fp32")
    onnx_side = OnnxPredictor(exported["decoded"])
    assert onnx_side.info == info
    decoded = {"torch": torch_side.decode(samples), "onnx": onnx_side.decode(samples)}
    assert {k: len(v) for k, v in decoded["onnx"].items()} == {"det": 3, "seg": 3, "pose": 3}
    coco = {k: p.coco_results(decoded[k], samples, min_score=0.2)
            for k, p in (("torch", torch_side), ("onnx", onnx_side))}
    assert [e["category_id"] for e in coco["onnx"]["det"]] == [e["category_id"] for e in coco["torch"]["det"]]
    assert len(coco["onnx"]["seg"]) == len(coco["torch"]["seg"])

