"""Data I/O: image listing, the mask rule on tricky files, image/mask pairing, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deltalearn.data.errors import DataError, ImageDecodeError
from deltalearn.data.io import (
    FOREGROUND_THRESHOLD,
    atomic_path,
    atomic_write_text,
    encode_png,
    find_images,
    list_images,
    match_masks,
    pair_masks,
    read_mask,
    write_mask,
)


def save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


# ---- the mask rule ------------------------------------------------------------------------------


def test_gray_mask_is_foreground_from_128(tmp_path: Path) -> None:
    values = np.array([[0, 127, 128, 255]], np.uint8)
    mask = read_mask(save(Image.fromarray(values, "L"), tmp_path / "gray.png"))
    assert FOREGROUND_THRESHOLD == 128
    assert mask.dtype == bool and mask.tolist() == [[False, False, True, True]]


def test_colour_mask_is_foreground_where_any_channel_reaches_128(tmp_path: Path) -> None:
    """Pure red is foreground, though its luminance (about 60) is far below 128."""
    colours = np.array([[[200, 0, 0], [0, 128, 0], [0, 0, 127], [127, 127, 127], [10, 20, 255]]], np.uint8)
    mask = read_mask(save(Image.fromarray(colours, "RGB"), tmp_path / "colour.png"))
    assert mask.tolist() == [[True, True, False, False, True]]


def test_palette_mask_follows_its_palette_colours(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0, 1, 2, 3]], np.uint8), "P")
    image.putpalette([0, 0, 0, 255, 255, 255, 130, 0, 0, 100, 100, 100] + [0] * (256 - 4) * 3)
    mask = read_mask(save(image, tmp_path / "palette.png"))
    assert mask.tolist() == [[False, True, True, False]]


def test_sixteen_bit_mask_maps_its_full_range_to_8_bit(tmp_path: Path) -> None:
    values = np.array([[0, 127 * 257, 128 * 257, 65535]], np.uint16)  # 8-bit 0, 127, 128, 255
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    mask = read_mask(save(image, tmp_path / "deep.png"))
    assert mask.tolist() == [[False, False, True, True]]


def test_mask_with_alpha_is_composited_onto_black(tmp_path: Path) -> None:
    """White at alpha 0, 127, 128, 255: transparent pixels are background."""
    rgba = np.array([[[255, 255, 255, a] for a in (0, 127, 128, 255)]], np.uint8)
    mask = read_mask(save(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png"))
    assert mask.tolist() == [[False, False, True, True]]
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    assert read_mask(save(la, tmp_path / "la.png")).tolist() == [[False, False, True, True]]


@pytest.mark.parametrize("content", [b"not a png", b"\x89PNG\r\n\x1a\n truncated", None])
def test_bad_mask_is_one_clear_error_naming_the_file(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "masks" / "bad.png"
    if content is not None:
        path.parent.mkdir()
        path.write_bytes(content)
    with pytest.raises(ImageDecodeError) as caught:
        read_mask(path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ") and "\n" not in text


def test_written_mask_reads_back(tmp_path: Path) -> None:
    mask = np.random.default_rng(0).random((9, 13)) > 0.5
    write_mask(mask, tmp_path / "out" / "m.png")
    assert np.asarray(Image.open(tmp_path / "out" / "m.png")).tolist() == (mask * 255).tolist()
    np.testing.assert_array_equal(read_mask(tmp_path / "out" / "m.png"), mask)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["m.png"]  # no temporary left


def test_encode_png_is_rgb_and_fixed(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    png = encode_png(pixels, 1)
    assert png == encode_png(pixels, 1)
    (tmp_path / "p.png").write_bytes(png)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p.png").convert("RGB")), pixels)


# ---- listing ------------------------------------------------------------------------------------


def test_list_images_of_a_file_a_folder_and_nothing(tmp_path: Path) -> None:
    save(Image.new("L", (4, 4)), tmp_path / "b" / "x.PNG")
    save(Image.new("L", (4, 4)), tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("no image")
    assert list_images(tmp_path / "a.jpg") == [tmp_path / "a.jpg"]
    assert list_images(tmp_path) == [tmp_path / "a.jpg", tmp_path / "b" / "x.PNG"]
    (tmp_path / "empty").mkdir()
    assert list_images(tmp_path / "empty") == []
    with pytest.raises(DataError, match="no images"):
        find_images(tmp_path / "empty")
    with pytest.raises(DataError, match="no such image or folder"):
        list_images(tmp_path / "missing")


# ---- pairing ------------------------------------------------------------------------------------


def test_masks_pair_by_relative_path_then_by_unique_stem(tmp_path: Path) -> None:
    images, masks = tmp_path / "images", tmp_path / "masks"
    for name in ("a.jpg", "sub/b.png", "c.png", "d.png", "e.png", "g/f.png"):
        save(Image.new("RGB", (4, 4)), images / name)
    for name in ("a.bmp", "a.png", "sub/b.tif", "elsewhere/c.png", "x/d.png", "y/d.png"):
        save(Image.new("L", (4, 4)), masks / name)
    matched = match_masks(find_images(images), images, masks)
    assert matched == {
        images / "a.jpg": masks / "a.png",  # same relative path, .png first
        images / "c.png": masks / "elsewhere" / "c.png",  # the only mask of its stem
        images / "d.png": None,  # two masks of its stem: ambiguous
        images / "e.png": None,
        images / "g" / "f.png": None,
        images / "sub" / "b.png": masks / "sub" / "b.tif",
    }


def test_images_inside_the_mask_folder_are_not_images(tmp_path: Path) -> None:
    save(Image.new("RGB", (4, 4)), tmp_path / "a.png")
    save(Image.new("L", (4, 4)), tmp_path / "masks" / "a.png")
    pairs, missing = pair_masks(tmp_path, tmp_path)
    assert pairs == [(tmp_path / "a.png", tmp_path / "masks" / "a.png")] and missing == []


# ---- atomic writes ------------------------------------------------------------------------------


def test_failed_atomic_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.json"]
