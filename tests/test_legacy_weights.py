"""Weight files written by an earlier release (commit 345f1f7, tests/data/legacy/make_legacy.py)
still load, and give the outputs that release computed on the same inputs."""

from __future__ import annotations

from pathlib import Path

import torch

from deltalearn.engine.checkpoint import read_weights
from deltalearn.export.runtime import OnnxPredictor
from deltalearn.mae.seg_head import load_seg_head
from deltalearn.mae.weights import load_mae
from deltalearn.mcn.backbones import normalize_images
from deltalearn.mcn.weights import load_model

LEGACY = Path(__file__).parent / "data" / "legacy"


def expected() -> dict[str, torch.Tensor]:
    return read_weights(LEGACY / "expected.safetensors")


def test_mcn_weights_of_the_old_code_load_and_give_its_outputs() -> None:
    saved = expected()
    model, info = load_model(LEGACY / "mcn.safetensors")
    assert info.category_names == ["person", "car"] and info.config.model.backbone == "mobilenetv3_small_050"
    with torch.no_grad():
        outputs = model(normalize_images(saved["images"]))
    old = {key.removeprefix("mcn."): value for key, value in saved.items() if key.startswith("mcn.")}
    assert set(outputs) == set(old)
    for key, value in old.items():
        torch.testing.assert_close(outputs[key], value, rtol=1e-4, atol=1e-5)


def test_onnx_export_of_the_old_code_runs() -> None:
    predictor = OnnxPredictor(LEGACY / "mcn_decoded.onnx")
    assert predictor.export.decoded and list(predictor.tasks) == ["det", "seg", "pose"]
    found = predictor.outputs(expected()["images"])
    assert found["det.boxes"].shape[:2] == found["det.scores"].shape
    assert found["seg.labels"].shape == (2, 64, 64)


def test_mae_and_seg_head_files_of_the_old_code_load_and_give_its_outputs() -> None:
    saved = expected()
    mae = load_mae(LEGACY / "mae.safetensors").eval()
    head = load_seg_head(LEGACY / "seg_head.safetensors", mae)
    images = saved["mae_images"]
    with torch.no_grad():
        torch.testing.assert_close(head(images)["logits"], saved["head_logits"], rtol=1e-4, atol=1e-5)
        latent, _, ids_restore = mae.forward_encoder(images, mask=torch.zeros(2, 16))
        torch.testing.assert_close(mae.forward_decoder(latent, ids_restore), saved["reconstruction"],
                                   rtol=1e-4, atol=1e-5)
