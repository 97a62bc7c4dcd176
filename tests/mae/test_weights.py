"""MAE weight files: Hugging Face parity, official checkpoints, encoder-only, our safetensors."""

from __future__ import annotations

import argparse
import re

import pytest
import torch
from safetensors.torch import save_file

# a test dependency: without it the parity test must fail, not skip
from transformers import ViTMAEConfig, ViTMAEForPreTraining

from deltalearn.mae import MAEConfig, MaskedAutoencoder, load_mae, load_pretrained, save_mae
from deltalearn.mae.weights import convert_hf_state_dict

TINY = dict(
    img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=2,
)


def tiny_mae(seed: int = 0, **overrides: object) -> MaskedAutoencoder:
    torch.manual_seed(seed)
    return MaskedAutoencoder(MAEConfig(**{**TINY, **overrides})).eval()


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Every trainable tensor random (biases and norms too), so that every key matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)


def tiny_hf(norm_pix_loss: bool = False) -> ViTMAEForPreTraining:
    config = ViTMAEConfig(
        image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=128, decoder_hidden_size=16,
        decoder_num_hidden_layers=2, decoder_num_attention_heads=2, decoder_intermediate_size=64,
        layer_norm_eps=1e-6, mask_ratio=0.75, norm_pix_loss=norm_pix_loss,
    )
    model = ViTMAEForPreTraining(config).eval()
    randomise(model, seed=1)
    # HF's own sin-cos init (newer transformers skip it on an initialised projection)
    model.vit.embeddings.patch_embeddings.projection._is_hf_initialized = False
    model.vit.embeddings.initialize_weights()
    model.decoder.initialize_weights(16)
    randomise(model, seed=2)  # tokens random again after initialize_weights
    return model


def legacy_hf_key(key: str) -> str:
    """transformers >= 5 ViTMAE key -> the transformers 4 name of checkpoints on the Hub."""
    for new, old in [
        (r"^vit\.layers\.", "vit.encoder.layer."), (r"attention\.q_proj", "attention.attention.query"),
        (r"attention\.k_proj", "attention.attention.key"),
        (r"attention\.v_proj", "attention.attention.value"),
        (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "intermediate.dense"),
        (r"mlp\.fc2", "output.dense"),
    ]:
        key = re.sub(new, old, key)
    return key


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_hugging_face_parity(norm_pix_loss: bool) -> None:
    hf = tiny_hf(norm_pix_loss)
    ours = tiny_mae(seed=3, norm_pix_loss=norm_pix_loss)
    hf_state = hf.state_dict()
    # an independent sin-cos implementation agrees with ours (checkpoint layout)
    assert hf_state["vit.embeddings.position_embeddings"].abs().sum() > 0
    torch.testing.assert_close(hf_state["vit.embeddings.position_embeddings"], ours.pos_embed)
    torch.testing.assert_close(hf_state["decoder.decoder_pos_embed"], ours.decoder_pos_embed)

    info = load_pretrained(ours, hf_state)
    assert (info.format, info.encoder_only, info.regenerated_pos_embed) == ("hf", False, False)

    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    with torch.no_grad():
        expected = hf(pixel_values=imgs, noise=noise)
        loss, pred, mask = ours(imgs, noise=noise)
    # HF keeps the patches of lowest noise, like ours
    kept = noise.argsort(dim=1)[:, :4]
    assert torch.equal(expected.mask, torch.ones(2, 16).scatter(1, kept, 0.0))
    assert torch.equal(mask, expected.mask)
    torch.testing.assert_close(pred, expected.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(loss, expected.loss, atol=1e-5, rtol=1e-4)


def test_hugging_face_files_and_legacy_names(tmp_path) -> None:
    state = tiny_hf().state_dict()
    converted = convert_hf_state_dict(state)
    legacy = {legacy_hf_key(k): v for k, v in state.items()}
    assert "vit.encoder.layer.0.attention.attention.query.weight" in legacy
    for key, value in convert_hf_state_dict(legacy).items():
        assert torch.equal(value, converted[key]), key
    # qkv fused in timm's order: q rows, then k, then v
    q_key = legacy_hf_key("vit.layers.1.attention.q_proj.weight")
    assert torch.equal(converted["blocks.1.attn.qkv.weight"][:32], legacy[q_key])
    v_key = legacy_hf_key("decoder.decoder_layers.0.attention.v_proj.bias")
    assert torch.equal(converted["decoder_blocks.0.attn.qkv.bias"][32:], legacy[v_key])

    save_file({k: v.contiguous() for k, v in legacy.items()}, tmp_path / "model.safetensors")
    torch.save(state, tmp_path / "pytorch_model.bin")
    for name in ["model.safetensors", "pytorch_model.bin"]:
        model = tiny_mae(seed=4)
        assert load_pretrained(model, tmp_path / name).format == "hf"
        for key, value in model.state_dict().items():
            assert torch.equal(value, converted[key]), (name, key)


# the official MAE key names of a 1-block encoder and 1-block decoder
OFFICIAL_KEYS = {
    "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
    "decoder_embed.weight", "decoder_embed.bias", "mask_token", "decoder_pos_embed",
    "decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias",
} | {
    f"{blocks}.0.{name}"
    for blocks in ("blocks", "decoder_blocks")
    for name in (
        f"{layer}.{param}"
        for layer in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
        for param in ("weight", "bias")
    )
}


def test_official_checkpoint_round_trip(tmp_path) -> None:
    assert set(tiny_mae(depth=1, decoder_depth=1).state_dict()) == OFFICIAL_KEYS
    source = tiny_mae(seed=5)
    randomise(source, seed=6)
    path = tmp_path / "mae_visualize_vit_tiny.pth"
    # the layout of facebookresearch/mae's misc.save_model
    torch.save({"model": source.state_dict(), "epoch": 3, "args": argparse.Namespace(lr=1e-3)}, path)
    target = tiny_mae(seed=7)
    assert load_pretrained(target, path).format == "official"
    imgs, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 16)
    with torch.no_grad():
        expected, got = source(imgs, noise=noise), target(imgs, noise=noise)
    for a, b in zip(expected, got):
        assert torch.equal(a, b)


class NotWeights:
    pass


def test_torch_load_is_weights_only(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": tiny_mae().state_dict(), "extra": NotWeights()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        load_pretrained(tiny_mae(), path)
    with pytest.raises(FileNotFoundError):
        load_pretrained(tiny_mae(), tmp_path / "missing.pth")


def test_encoder_only_fails_unless_allowed() -> None:
    source = tiny_mae(seed=8)
    encoder = {k: v for k, v in source.state_dict().items() if not k.startswith(("decoder", "mask_token"))}
    with pytest.raises(ValueError, match="encoder-only"):
        load_pretrained(tiny_mae(), encoder)
    hf_encoder = tiny_hf().vit.state_dict()  # a HF ViTMAEModel: keys without "vit."
    with pytest.raises(ValueError, match="encoder-only"):
        load_pretrained(tiny_mae(), hf_encoder)

    target = tiny_mae(seed=9)
    decoder_before = target.decoder_pred.weight.clone()
    with pytest.warns(UserWarning, match="decoder is randomly initialised"):
        info = load_pretrained(target, encoder, allow_encoder_only=True)
    assert info.encoder_only
    assert torch.equal(target.blocks[1].attn.qkv.weight, source.blocks[1].attn.qkv.weight)
    assert torch.equal(target.decoder_pred.weight, decoder_before)


def test_mismatched_checkpoint_names_key_and_shapes() -> None:
    wide = tiny_mae(embed_dim=64).state_dict()  # e.g. a base checkpoint into a tiny model
    with pytest.raises(ValueError, match=r"'cls_token' is \(1, 1, 64\) in the checkpoint but \(1, 1, 32\)"):
        load_pretrained(tiny_mae(), wide)
    narrow_mlp = tiny_mae(mlp_ratio=2.0).state_dict()
    expected = r"'blocks\.0\.mlp\.fc1\.weight' is \(64, 32\) in the checkpoint but \(128, 32\)"
    with pytest.raises(ValueError, match=expected):
        load_pretrained(tiny_mae(), narrow_mlp)
    deep = tiny_mae(depth=3).state_dict()
    with pytest.raises(ValueError, match=r"unexpected keys \['blocks\.2\."):
        load_pretrained(tiny_mae(), deep)
    with pytest.raises(ValueError, match="not an MAE state dict"):
        load_pretrained(tiny_mae(), {"head.weight": torch.zeros(2)})


def test_other_image_size_regenerates_pos_embed() -> None:
    source = tiny_mae(seed=10)
    target = tiny_mae(seed=11, img_size=48)
    with pytest.warns(UserWarning, match="regenerated"):
        info = load_pretrained(target, source.state_dict())
    assert info.regenerated_pos_embed
    assert target.pos_embed.shape == (1, 1 + 36, 32)
    assert torch.equal(target.blocks[0].mlp.fc1.weight, source.blocks[0].mlp.fc1.weight)
    loss, _, _ = target(torch.randn(1, 3, 48, 48))
    assert torch.isfinite(loss)


def test_save_and_load_our_safetensors(tmp_path) -> None:
    model = tiny_mae(seed=12, in_chans=1, img_size=(16, 32), norm_pix_loss=True)
    randomise(model, seed=13)
    path = tmp_path / "run" / "mae.safetensors"
    save_mae(model, path)
    assert [p.name for p in path.parent.iterdir()] == ["mae.safetensors"]  # no temp file left
    loaded = load_mae(path)
    assert loaded.config == model.config
    imgs, noise = torch.rand(2, 1, 16, 32), torch.rand(2, 8)
    with torch.no_grad():
        for a, b in zip(model(imgs, noise=noise), loaded.eval()(imgs, noise=noise)):
            assert torch.equal(a, b)
    assert load_pretrained(tiny_mae(in_chans=1, img_size=(16, 32)), path).format == "official"

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(1)}, foreign)
    with pytest.raises(ValueError, match="not a deltalearn MAE file"):
        load_mae(foreign)
    with pytest.raises(ValueError, match="not found"):
        load_mae(tmp_path / "missing.safetensors")
