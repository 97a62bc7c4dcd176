"""ONNX export, onnxruntime inference and INT8: parity with eager PyTorch on two input sizes,
decoding inside the graph, predict through onnxruntime, the INT8 metric change, bad input."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.engine.checkpoint import CheckpointError, read_weights, save_weights, weights_metadata
from deltalearn.export.onnx import EXPORT_KEY, ExportGraph, example_images, export_onnx
from deltalearn.export.runtime import (
    DECISION_TOLERANCE, EXPORT_TOLERANCE, OnnxPredictor, output_differences, within_tolerance
)
from deltalearn.mcn.data import EvalDataset, collate_eval, open_coco
from deltalearn.mcn.evaluate import evaluate
from deltalearn.mcn.predictor import TorchPredictor
from deltalearn.mcn.weights import METADATA_KEY, build_model, load_model
from deltalearn.mcn.tasks.detection import TOP_K
from deltalearn.mcn.tasks.pose import POSE_TOP_K

SIZE = 64
TINY = ["model.backbone=resnet18", "model.neck_channels=32", "model.head_channels=32", f"data.image_size={SIZE}",
        "data.workers=0", "train.batch_size=8", "train.lr=3e-3", "train.warmup_epochs=0", "train.seed=0",
        "data.scale_range=[1.0,1.0]", "data.shift=0", "data.color_jitter=0", "train.val_every=0"]
SHAPES = [(2, SIZE, SIZE), (1, SIZE + 32, SIZE + 64)]  # (batch, height, width): two input sizes, two batches


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export") / "set"
    assert main(["mcn", "synth", "--out", str(root), "--images", "8", "--size", str(SIZE), "--seed", "5",
                 "--workers", "1"]) == 0
    return root


@pytest.fixture(scope="module")
def run(data: Path, tmp_path_factory) -> Path:
    """A briefly trained seg+det+pose model (24 steps): peaks that stand out of the heatmaps."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["mcn", "train", "--data", str(data), "--out", str(out), *TINY, "train.epochs=24"]) == 0
    return out


@pytest.fixture(scope="module")
def exported(run: Path, tmp_path_factory) -> dict[str, Path]:
    """The run exported with raw outputs and with decoding in the graph."""
    folder = tmp_path_factory.mktemp("onnx")
    files = {"raw": folder / "raw.onnx", "decoded": folder / "decoded.onnx"}
    assert main(["mcn", "export", "--weights", str(run), "--out", str(files["raw"])]) == 0
    assert main(["mcn", "export", "--weights", str(run), "--out", str(files["decoded"]), "--decode"]) == 0
    return files


def eager_and_onnx(run: Path, path: Path, shape: tuple[int, int, int]) -> tuple[dict, dict]:
    model, _ = load_model(run)
    images = example_images(*shape, seed=7)
    predictor = OnnxPredictor(path)
    with torch.no_grad():
        reference = ExportGraph(model, predictor.export.decoded).named_outputs(images)
    return reference, predictor.outputs(images)


def test_raw_graph_is_valid_dynamic_and_self_describing(run: Path, exported: dict[str, Path]):
    proto = onnx.load(str(exported["raw"]))
    onnx.checker.check_model(proto, full_check=True)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    model, info = load_model(run)
    assert [o.name for o in proto.graph.output] == list(model(torch.zeros(1, 3, SIZE, SIZE)))
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(metadata[METADATA_KEY])["category_names"] == info.category_names
    assert json.loads(metadata[EXPORT_KEY])["decoded"] is False


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_raw_outputs_match_eager(run: Path, exported: dict[str, Path], shape: tuple[int, int, int]):
    reference, found = eager_and_onnx(run, exported["raw"], shape)
    assert set(found) == set(reference)
    for name, expected in reference.items():
        assert found[name].shape == expected.shape, name
        scale = max(1.0, float(expected.abs().max()))
        torch.testing.assert_close(found[name], expected, rtol=0, atol=EXPORT_TOLERANCE * scale, msg=name)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_decoded_graph_matches_eager_decoding(run: Path, exported: dict[str, Path], shape: tuple[int, int, int]):
    reference, found = eager_and_onnx(run, exported["decoded"], shape)
    batch, height, width = shape
    assert found["det.boxes"].shape == (batch, TOP_K, 4)
    assert found["pose.keypoints"].shape == (batch, POSE_TOP_K, 17, 2)
    assert found["seg.labels"].shape == (batch, height, width)
    confident = reference["det.scores"] >= 0.1
    assert confident.any(), "the trained model should find something"
    torch.testing.assert_close(found["det.scores"], reference["det.scores"], rtol=0, atol=1e-5)
    torch.testing.assert_close(found["det.boxes"][confident], reference["det.boxes"][confident], rtol=0, atol=1e-3)
    assert torch.equal(found["det.labels"][confident], reference["det.labels"][confident])
    persons = reference["pose.scores"] >= 0.1
    torch.testing.assert_close(found["pose.boxes"][persons], reference["pose.boxes"][persons], rtol=0, atol=1e-3)
    # a keypoint may snap to another of two near-equal peaks: compare the share that moved
    moved = (found["pose.keypoints"][persons] - reference["pose.keypoints"][persons]).abs().amax(-1) > 1e-3
    assert moved.float().mean() <= DECISION_TOLERANCE
    assert (found["seg.labels"] != reference["seg.labels"]).float().mean() <= DECISION_TOLERANCE
    assert within_tolerance(output_differences(reference, found, decoded=True), decoded=True)


def test_decoded_label_maps_match_where_both_labels_occur(run: Path, tmp_path: Path):
    """The trained run's label maps are still all background: an untrained model's are mixed."""
    _, info = load_model(run)
    torch.manual_seed(0)
    model = build_model(info).eval()
    export_onnx(model, info, tmp_path / "random.onnx", decode=True)
    predictor = OnnxPredictor(tmp_path / "random.onnx")
    for shape in SHAPES:
        images = example_images(*shape, seed=3)
        with torch.no_grad():
            expected = ExportGraph(model, decode=True).named_outputs(images)["seg.labels"]
        shares = torch.bincount(expected.flatten(), minlength=info.num_classes + 1) / expected.numel()
        assert (shares > 0.01).sum() >= 2, shares  # label boundaries to get right
        assert (predictor.outputs(images)["seg.labels"] != expected).float().mean() <= DECISION_TOLERANCE


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


def test_bad_input_is_one_clear_line(run: Path, data: Path, exported: dict[str, Path], tmp_path: Path, capsys):
    # a checkpoint whose tensors do not fit the config stored with it
    weights = run / "last.safetensors"
    metadata = weights_metadata(weights)
    info = json.loads(metadata[METADATA_KEY])
    info["config"]["model"]["head_channels"] = 64
    mismatched = tmp_path / "mismatched.safetensors"
    save_weights(read_weights(weights), mismatched, metadata={**metadata, METADATA_KEY: json.dumps(info)})
    assert main(["mcn", "export", "--weights", str(mismatched), "--out", str(tmp_path / "m.onnx")]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "mismatched.safetensors" in error and "do not fit" in error and error.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()
    # calibrating from an empty folder
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["mcn", "export", "--weights", str(run), "--out", str(tmp_path / "q.onnx"), "--int8", "--calib", str(empty)]
    assert main(args) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "empty" in error and "no readable images" in error and error.count("\n") == 1
    # an ONNX file of another model, and a file that is no ONNX model at all
    other = tmp_path / "other.onnx"
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])],
                                                            "other", [x], [y])), str(other))
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    for path, message in ((other, "not an MCN model"), (tmp_path / "garbage.onnx", "not a readable ONNX model")):
        assert main(["mcn", "predict", "--weights", str(path), "--source", str(data / "images"),
                     "--out", str(tmp_path / "p")]) == EXIT_BAD_INPUT
        error = capsys.readouterr().err
        assert path.name in error and message in error and error.count("\n") == 1
        with pytest.raises(CheckpointError, match=message):
            OnnxPredictor(path)
    # an input the decoding graph cannot take
    with pytest.raises(ValueError, match="multiples of 32"):
        OnnxPredictor(exported["decoded"]).outputs(torch.zeros(1, 3, 40, 64, dtype=torch.uint8))
