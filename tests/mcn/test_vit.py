"""The plain-ViT backbone: built from an MAE's encoder (deltalearn or official files), its
simple feature pyramid, pos-embed resampling, --init, saved networks, export and bad input."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch

from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.config import ConfigError
from deltalearn.engine.checkpoint import CheckpointError
from deltalearn.engine.trainer import default_param_groups
from deltalearn.export.onnx import ExportGraph, example_images
from deltalearn.export.runtime import OnnxPredictor
from deltalearn.mae.model import create_mae
from deltalearn.mae.weights import save_mae
from deltalearn.mcn.config import ModelConfig, ViTConfig
from deltalearn.mcn.model import build_mcn
from deltalearn.mcn.vit import SimpleFeaturePyramid
from deltalearn.mcn.warm_start import warm_start
from deltalearn.mcn.weights import load_model
from deltalearn.vit.checkpoint import read_mae_encoder

SMALL = dict(tasks=["seg", "det", "pose"], neck_channels=16, head_channels=16)
TINY_RUN = ["model.neck_channels=16", "model.head_channels=16", "data.image_size=64", "data.workers=0",
            "train.batch_size=4", "train.epochs=1", "train.val_every=0", "train.warmup_epochs=0",
            "data.scale_range=[1.0,1.0]", "data.shift=0", "data.color_jitter=0"]


@pytest.fixture(scope="module")
def mae_file(tmp_path_factory) -> Path:
    """A deltalearn MAE file: ViT width 192, depth 4, patch 8, pretrained at 64 px (8x8 grid)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mae") / "mae.safetensors"
    save_mae(create_mae("mae_vit_cpu_patch8"), path)
    return path


@pytest.fixture(scope="module")
def official_encoder(tmp_path_factory) -> Path:
    """An encoder-only .pth in the official layout ({"model": encoder tensors}), 4x4 grid of 16 px."""
    torch.manual_seed(1)
    mae = create_mae("mae_vit_cpu_patch8", img_size=64, patch_size=16, embed_dim=128, num_heads=2)
    encoder = {k: v for k, v in mae.state_dict().items() if not k.startswith(("decoder", "mask_token"))}
    path = tmp_path_factory.mktemp("official") / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": encoder}, path)
    return path


def test_mae_backbone_takes_the_encoders_shapes_and_weights(mae_file: Path) -> None:
    config = ModelConfig(backbone=f"mae:{mae_file}", **SMALL)
    model = build_mcn(config)
    assert config.vit == ViTConfig(embed_dim=192, depth=4, num_heads=3, patch_size=8, mlp_ratio=4.0, pos_grid=[8, 8])
    _, encoder = read_mae_encoder(mae_file)
    own = model.backbone.vit.state_dict()
    assert set(own) == set(encoder)
    for key, value in encoder.items():
        assert torch.equal(own[key], value), key
    assert model.backbone.reductions == [4, 8, 16, 32] and model.backbone.channels == [96, 192, 192, 192]
    outputs = model(torch.randn(2, 3, 96, 64))  # another grid than pretraining's: pos embeds resampled
    assert outputs["det.heatmap"].shape == (2, 1, 24, 16) and outputs["seg.logits"].shape == (2, 2, 24, 16)


def test_position_embeddings_and_class_token_get_no_weight_decay(mae_file: Path) -> None:
    model = build_mcn(ModelConfig(backbone=f"mae:{mae_file}", **SMALL))
    decay, no_decay = default_param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"backbone.vit.pos_embed", "backbone.vit.cls_token"} <= skipped
    assert "backbone.vit.blocks.0.attn.qkv.weight" in {names[id(p)] for p in decay["params"]}


def test_official_encoder_only_file_gives_width_patch_and_heads_from_its_shapes(official_encoder: Path) -> None:
    config = ModelConfig(backbone=f"mae:{official_encoder}", **SMALL)
    model = build_mcn(config)
    assert (config.vit.embed_dim, config.vit.patch_size, config.vit.num_heads, config.vit.pos_grid) == (128, 16, 2, [4, 4])
    assert model(torch.randn(1, 3, 64, 64))["pose.heatmap"].shape == (1, 17, 16, 16)
    pyramid = SimpleFeaturePyramid(128, 16)
    shapes = [tuple(level.shape) for level in pyramid(torch.randn(1, 128, 4, 4))]
    assert shapes == [(1, 32, 16, 16), (1, 64, 8, 8), (1, 128, 4, 4), (1, 128, 2, 2)]


def test_an_encoder_that_does_not_fit_the_chosen_vit_is_refused_naming_both(mae_file: Path) -> None:
    config = ModelConfig(backbone=f"mae:{mae_file}", vit=ViTConfig(patch_size=16), **SMALL)
    with pytest.raises(ConfigError, match=r"has patch size 8, but model.vit.patch_size is 16"):
        build_mcn(config)
    config = ModelConfig(backbone=f"mae:{mae_file}", vit=ViTConfig(embed_dim=384), **SMALL)
    with pytest.raises(ConfigError, match=r"has width 192, but model.vit.embed_dim is 384"):
        build_mcn(config)
    with pytest.raises(CheckpointError, match="MAE weight file not found"):
        build_mcn(ModelConfig(backbone="mae:/no/such/mae.pth", **SMALL))
    with pytest.raises(ConfigError, match="patch_size 12"):
        build_mcn(ModelConfig(backbone="vit", vit=ViTConfig(embed_dim=64, depth=1, num_heads=1, patch_size=12), **SMALL))


def test_init_loads_an_mae_into_a_vit_and_a_cnn_refuses_it(mae_file: Path) -> None:
    vit = ViTConfig(embed_dim=192, depth=4, num_heads=3, patch_size=8, pos_grid=[16, 16])  # another grid
    model = build_mcn(ModelConfig(backbone="vit", vit=vit, **SMALL))
    report = warm_start(model, mae_file)
    _, encoder = read_mae_encoder(mae_file)
    own = model.backbone.vit.state_dict()
    assert own["pos_embed"].shape == (1, 1 + 16 * 16, 192)  # resampled from 8x8
    assert torch.equal(own["blocks.3.mlp.fc2.weight"], encoder["blocks.3.mlp.fc2.weight"])
    assert len(report.loaded) == len(encoder) and all(name.startswith("backbone.vit.") for name in report.loaded)
    cnn = build_mcn(ModelConfig(backbone="resnet18", **SMALL))
    with pytest.raises(CheckpointError, match="an MAE encoder, but the backbone is resnet18, a CNN"):
        warm_start(cnn, mae_file)
    narrow = build_mcn(ModelConfig(backbone="vit", vit=ViTConfig(embed_dim=96, depth=4, num_heads=3, patch_size=8),
                                   **SMALL))
    with pytest.raises(CheckpointError, match="does not fit the ViT backbone"):
        warm_start(narrow, mae_file)


def test_trained_mae_started_network_reloads_without_the_mae_and_exports(mae_file: Path, tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["mcn", "synth", "--out", str(data), "--images", "8", "--size", "64", "--workers", "1"]) == 0
    mae_copy = tmp_path / "mae.safetensors"
    mae_copy.write_bytes(mae_file.read_bytes())
    assert main(["mcn", "train", "--data", str(data), "--out", str(run), f"model.backbone=mae:{mae_copy}",
                 *TINY_RUN]) == 0
    mae_copy.unlink()  # the trained file records the ViT's shapes: the MAE is not needed any more
    model, info = load_model(run)
    assert info.config.model.vit.patch_size == 8
    onnx_file = tmp_path / "vit.onnx"
    assert main(["mcn", "export", "--weights", str(run), "--out", str(onnx_file)]) == 0
    onnx.checker.check_model(onnx.load(str(onnx_file)))
    images = example_images(1, 96, 64, seed=3)
    with torch.no_grad():
        reference = ExportGraph(model, False).named_outputs(images)
    found = OnnxPredictor(onnx_file).outputs(images)
    for key in ("det.heatmap", "seg.logits", "pose.heatmap"):
        torch.testing.assert_close(found[key], reference[key], atol=1e-3, rtol=1e-3)
    int8 = tmp_path / "vit_int8.onnx"
    assert main(["mcn", "export", "--weights", str(run), "--out", str(int8), "--int8", "--calib",
                 str(data / "images")]) == 0
    proto = onnx.load(str(int8))
    assert sum(node.op_type == "QuantizeLinear" for node in proto.graph.node) > 10
    quantized = OnnxPredictor(int8).outputs(images)
    error = (quantized["det.heatmap"] - reference["det.heatmap"]).abs().mean() / reference["det.heatmap"].abs().mean()
    assert error < 0.1, float(error)  # INT8 rounding of the ViT's matmuls, not a broken graph


def test_a_frozen_mae_encoder_stays_as_loaded_while_the_heads_train(mae_file: Path, tmp_path: Path) -> None:
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["mcn", "synth", "--out", str(data), "--images", "8", "--size", "64", "--workers", "1"]) == 0
    assert main(["mcn", "train", "--data", str(data), "--out", str(run), "--init", str(mae_file), "model.backbone=vit",
                 "model.vit.embed_dim=192", "model.vit.depth=4", "model.vit.num_heads=3", "model.vit.patch_size=8",
                 "train.freeze=[backbone]", *TINY_RUN]) == 0
    model, info = load_model(run)
    _, encoder = read_mae_encoder(mae_file)
    own = model.backbone.vit.state_dict()
    assert own["pos_embed"].shape == (1, 1 + 28 * 28, 192)  # model.vit.pos_grid defaults to 224 px / 8
    for key in ("blocks.0.attn.qkv.weight", "blocks.3.mlp.fc2.bias", "norm.weight", "patch_embed.proj.weight"):
        assert torch.equal(own[key], encoder[key]), key
    fresh = build_mcn(info.config.model)
    assert not torch.equal(model.tasks["det"].state_dict()["heads.heatmap.2.bias"],
                           fresh.tasks["det"].state_dict()["heads.heatmap.2.bias"])  # the heads did train


def test_cli_refuses_a_cnn_init_from_an_mae_and_a_missing_mae(mae_file: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    assert main(["mcn", "synth", "--out", str(data), "--images", "4", "--size", "64", "--workers", "1"]) == 0
    capsys.readouterr()
    code = main(["mcn", "train", "--data", str(data), "--out", str(tmp_path / "a"), "--init", str(mae_file),
                 "model.backbone=resnet18", *TINY_RUN])
    assert code == EXIT_BAD_INPUT
    assert "an MAE encoder, but the backbone is resnet18" in capsys.readouterr().err
    code = main(["mcn", "train", "--data", str(data), "--out", str(tmp_path / "b"), "model.backbone=mae:nowhere.pth",
                 *TINY_RUN])
    assert code == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "nowhere.pth: MAE weight file not found" in error and len(error.strip().splitlines()) == 1
