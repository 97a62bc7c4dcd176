"""ONNX export: a valid, dynamic, self-describing graph whose raw and decoded outputs match eager PyTorch on two input sizes; bad input is one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch

from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.engine.checkpoint import CheckpointError, read_weights, save_weights, weights_metadata
from deltalearn.export.onnx import EXPORT_KEY, ExportGraph, example_images, export_onnx
from deltalearn.export.runtime import (
    DECISION_TOLERANCE,
    EXPORT_TOLERANCE,
    OnnxPredictor,
    output_differences,
    within_tolerance,
)
from deltalearn.mcn.tasks.detection import TOP_K
from deltalearn.mcn.tasks.pose import POSE_TOP_K
from deltalearn.mcn.weights import METADATA_KEY, build_model, load_model

from .settings import SHAPES, SIZE, eager_and_onnx


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

