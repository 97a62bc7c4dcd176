"""The masked autoencoder: patch order, masking, loss, patch errors, variants."""

from __future__ import annotations

import math

import pytest
import torch

from deltalearn.config import ConfigError
from deltalearn.mae import (
    MAE_VARIANTS,
    MAEConfig,
    MaskedAutoencoder,
    create_mae,
    masking_from_mask,
    patchify,
    random_masking,
    unpatchify,
)
from deltalearn.mae.pos_embed import sincos_2d

TINY = dict(
    img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
    decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2,
)  # 16 patches, 4 kept at ratio 0.75


def tiny_mae(seed: int = 0, **overrides: object) -> MaskedAutoencoder:
    torch.manual_seed(seed)
    return MaskedAutoencoder(MAEConfig(**{**TINY, **overrides})).eval()


@pytest.mark.parametrize("channels,height,width", [(3, 32, 32), (1, 16, 24)])
def test_patchify_order_and_round_trip(channels: int, height: int, width: int) -> None:
    p = 8
    imgs = torch.randn(2, channels, height, width)
    patches = patchify(imgs, p)
    cols = width // p
    assert patches.shape == (2, (height // p) * cols, p * p * channels)
    # official MAE order inside a patch: (row p, column q, channel c)
    for index, (row, col, dp, dq, c) in enumerate([(0, 1, 3, 5, 0), (1, 2, 7, 0, channels - 1)]):
        value = patches[index, row * cols + col, (dp * p + dq) * channels + c]
        assert value == imgs[index, c, row * p + dp, col * p + dq]
    assert torch.equal(unpatchify(patches, p, (height // p, cols)), imgs)


def test_patchify_rejects_indivisible_size() -> None:
    with pytest.raises(ValueError, match="multiple of the patch size"):
        patchify(torch.zeros(1, 3, 30, 32), 8)


def test_random_masking_keeps_lowest_noise_and_restores() -> None:
    n, length, dim, ratio = 3, 16, 4, 0.75
    x = torch.randn(n, length, dim)
    noise = torch.rand(n, length)
    kept, mask, ids_restore = random_masking(x, ratio, noise)
    len_keep = int(length * (1 - ratio))
    assert kept.shape == (n, len_keep, dim)
    assert torch.equal(mask.sum(dim=1), torch.full((n,), float(length - len_keep)))
    lowest = noise.argsort(dim=1)[:, :len_keep]
    expected_mask = torch.ones(n, length).scatter(1, lowest, 0.0)
    assert torch.equal(mask, expected_mask)
    # ids_restore puts [kept, removed] back in image order
    filler = torch.zeros(n, length - len_keep, dim)
    restored = torch.gather(torch.cat([kept, filler], 1), 1, ids_restore[..., None].expand(-1, -1, dim))
    assert torch.equal(restored[mask == 0], x[mask == 0])
    assert torch.equal(ids_restore.argsort(dim=1), noise.argsort(dim=1))  # inverse of the shuffle


def test_masking_from_mask_checks_rows() -> None:
    x = torch.randn(2, 4, 3)
    kept, mask, _ = masking_from_mask(x, torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1]]))
    assert torch.equal(kept, torch.stack([x[0, [1, 3]], x[1, [0, 1]]]))
    assert torch.equal(mask, torch.tensor([[1.0, 0, 1, 0], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="same number of patches"):
        masking_from_mask(x, torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        masking_from_mask(x, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="0 .keep. or 1"):
        masking_from_mask(x, torch.full((2, 4), 0.5))


def _patch_box(index: int, cols: int, p: int) -> tuple[slice, slice]:
    row, col = divmod(index, cols)
    return slice(row * p, (row + 1) * p), slice(col * p, (col + 1) * p)


def test_encoder_sees_only_kept_patches_of_explicit_mask() -> None:
    model = tiny_mae()
    imgs = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, 4:] = True
    mask[1, :12] = True
    with torch.no_grad():
        latent, out_mask, _ = model.forward_encoder(imgs, mask=mask)
        assert latent.shape == (2, 1 + 4, 32)
        assert torch.equal(out_mask, mask.float())
        changed = imgs.clone()
        rows, cols = _patch_box(7, 4, 8)  # removed in both images
        changed[:, :, rows, cols] += 5.0
        assert torch.equal(model.forward_encoder(changed, mask=mask)[0], latent)
        rows, cols = _patch_box(0, 4, 8)  # kept in image 0 only
        changed[:, :, rows, cols] += 5.0
        moved = model.forward_encoder(changed, mask=mask)[0]
        assert not torch.allclose(moved[0], latent[0]) and torch.equal(moved[1], latent[1])


def test_explicit_mask_equals_same_mask_from_noise() -> None:
    model = tiny_mae()
    imgs = torch.randn(2, 3, 32, 32)
    noise = torch.rand(2, 16)
    with torch.no_grad():
        loss, pred, mask = model(imgs, noise=noise)
        loss_m, pred_m, mask_m = model(imgs, mask=mask)
    assert torch.equal(mask, mask_m)
    torch.testing.assert_close(pred_m, pred, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss_m, loss)


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_loss_only_on_removed_patches(norm_pix_loss: bool) -> None:
    model = tiny_mae(norm_pix_loss=norm_pix_loss)
    imgs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        loss, pred, mask = model(imgs, mask_ratio=0.5)
        assert loss > 0
        visible = pred.clone()
        visible[mask == 0] += 3.0
        assert torch.equal(model.forward_loss(imgs, visible, mask), loss)
        removed = pred.clone()
        removed[mask == 1] += 3.0
        assert model.forward_loss(imgs, removed, mask) > loss + 1.0
        target = model.patchify(imgs)
        if norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        assert model.forward_loss(imgs, target, mask) < 1e-10  # perfect prediction


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_patch_errors_mean_over_removed_is_the_loss(norm_pix_loss: bool) -> None:
    model = tiny_mae(norm_pix_loss=norm_pix_loss)
    imgs = torch.randn(3, 3, 32, 32)
    noise = torch.rand(3, 16)
    with torch.no_grad():
        loss, pred, mask = model(imgs, noise=noise)
        result = model.patch_errors(imgs, noise=noise)
    assert result.errors.shape == (3, 16)
    assert torch.equal(result.mask, mask) and torch.equal(result.pred, pred)
    torch.testing.assert_close(result.errors[mask == 1].mean(), loss)


def test_grayscale_and_non_square_train_step() -> None:
    model = tiny_mae(in_chans=1, img_size=(16, 40)).train()
    imgs = torch.rand(2, 1, 16, 40)
    loss, pred, mask = model(imgs)
    assert pred.shape == (2, 2 * 5, 8 * 8 * 1) and mask.shape == (2, 10)
    loss.backward()
    assert model.mask_token.grad is not None and model.patch_embed.proj.weight.grad is not None
    assert model.unpatchify(pred).shape == imgs.shape


def test_init_and_fixed_pos_embed() -> None:
    model = tiny_mae()
    names = {name for name, _ in model.named_parameters()}
    assert "pos_embed" not in names and "decoder_pos_embed" not in names  # fixed buffers
    assert torch.equal(model.pos_embed[0], sincos_2d(32, (4, 4)))
    emb = model.pos_embed[0, 1:]  # [16, 32], patch (i, j) at i*4 + j
    # first half codes the column j, second half the row i; omega_0 = 1
    assert emb[1, 0] == pytest.approx(math.sin(1.0)) and emb[4, 0] == 0.0
    assert emb[4, 16] == pytest.approx(math.sin(1.0)) and emb[1, 16] == 0.0
    assert torch.equal(model.norm.weight, torch.ones(32)) and torch.equal(model.norm.bias, torch.zeros(32))
    assert torch.equal(model.blocks[0].attn.qkv.bias, torch.zeros(96))
    bound = math.sqrt(6 / (32 + 96))  # xavier-uniform bound of qkv [96, 32]
    assert model.blocks[0].attn.qkv.weight.abs().max() <= bound


# trainable parameters of each variant (encoder, decoder); the documented numbers
VARIANT_PARAMS = {
    "mae_vit_base_patch16": (85_647_360, 26_008_320),
    "mae_vit_large_patch16": (303_099_904, 26_139_392),
    "mae_vit_huge_patch14": (630_435_840, 26_178_124),
    "mae_vit_tiny_patch16": (5_486_592, 3_406_592),
    "mae_vit_small_patch16": (21_590_016, 3_455_744),
    "mae_vit_cpu_patch8": (1_817_088, 446_400),
}


@pytest.mark.parametrize("name", sorted(MAE_VARIANTS))
def test_variant_builds_with_documented_size(name: str) -> None:
    assert name in VARIANT_PARAMS, "document the new variant's parameter count"
    with torch.device("meta"):  # no memory or init time for the large ones
        model = create_mae(name)
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    decoder = sum(n for name, n in sizes.items() if name.startswith(("decoder", "mask_token")))
    encoder = sum(sizes.values()) - decoder
    assert (encoder, decoder) == VARIANT_PARAMS[name]


def test_cpu_variant_runs_on_cpu() -> None:
    torch.manual_seed(0)
    model = create_mae("mae_vit_cpu_patch8", in_chans=1)
    loss, pred, mask = model(torch.rand(2, 1, 64, 64))
    assert pred.shape == (2, 64, 64) and int(mask[0].sum()) == 48 and torch.isfinite(loss)


def test_unknown_variant_and_override_are_named() -> None:
    with pytest.raises(ValueError, match="did you mean 'mae_vit_base_patch16'"):
        create_mae("mae_vit_base_patch61")
    with pytest.raises(ConfigError, match="did you mean 'in_chans'"):
        create_mae("mae_vit_cpu_patch8", in_chan=1)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        MAEConfig(img_size=30, patch_size=8)
