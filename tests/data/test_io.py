"""data.io: safe image decoding (modes, bit depths, EXIF orientation, clear errors), the one
mask rule, mask writing and reading back, image listing, image/mask pairing, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deltalearn.data.errors import DataError, ImageDecodeError
from deltalearn.data.io import (
    BACKGROUND,
    FOREGROUND_THRESHOLD,
    atomic_path,
    atomic_write_text,
    encode_png,
    find_images,
    list_images,
    load_rgb,
    match_masks,
    pair_masks,
    read_image_size,
    read_mask,
    write_mask,
)


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def test_rgb_png_is_exact(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    out = load_rgb(_save(Image.fromarray(pixels), tmp_path / "rgb.png"))
    assert out.dtype == np.uint8 and out.shape == (10, 12, 3)
    np.testing.assert_array_equal(out, pixels)


@pytest.mark.parametrize("mode, value, expected", [("L", 77, 77), ("1", 1, 255), ("1", 0, 0)])
def test_grayscale_repeats_to_three_channels(tmp_path, mode, value, expected):
    out = load_rgb(_save(Image.new(mode, (6, 4), value), tmp_path / "gray.png"))
    assert out.shape == (4, 6, 3)
    assert (out == expected).all()


def test_rgba_is_composited_onto_black_not_stripped(tmp_path):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)  # opaque: unchanged
    rgba[0, 1] = (200, 100, 50, 0)  # transparent: background
    rgba[0, 2] = (255, 255, 255, 128)  # half: half as bright
    out = load_rgb(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png")).astype(int)
    assert BACKGROUND == (0, 0, 0)
    assert out[0, 0].tolist() == [200, 100, 50]
    assert out[0, 1].tolist() == [0, 0, 0]
    assert np.abs(out[0, 2] - 128).max() <= 1


def test_gray_with_alpha_is_composited(tmp_path):
    image = Image.merge("LA", (Image.new("L", (2, 2), 200), Image.new("L", (2, 2), 128)))
    out = load_rgb(_save(image, tmp_path / "la.png")).astype(int)
    assert np.abs(out - round(200 * 128 / 255)).max() <= 1


def test_palette_with_and_without_transparency(tmp_path):
    palette = [0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9)
    image = Image.fromarray(np.array([[1, 2], [2, 1]], dtype=np.uint8), "P")
    image.putpalette(palette)
    opaque = load_rgb(_save(image, tmp_path / "p.png"))
    assert opaque[0, 0].tolist() == [255, 0, 0] and opaque[0, 1].tolist() == [0, 0, 255]
    see_through = load_rgb(_save(image, tmp_path / "p_t.png", transparency=2))  # blue is transparent
    assert see_through[0, 0].tolist() == [255, 0, 0]
    assert see_through[0, 1].tolist() == list(BACKGROUND)


def test_16_bit_png_scales_by_the_type_range(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # -> 0, 1, 128, 255
    path = _save(Image.fromarray(values), tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I")
    out = load_rgb(path)
    assert out[..., 0].tolist() == [[0, 1, 128, 255]]
    assert (out[..., 0] == out[..., 2]).all()


def test_dark_16_bit_image_is_not_stretched(tmp_path):
    values = np.array([[0, 1000, 2000]], dtype=np.uint16)
    out = load_rgb(_save(Image.fromarray(values), tmp_path / "dark.png"))
    assert out[..., 0].tolist() == [[0, 4, 8]]


def test_big_endian_16_bit_and_32_bit_integer(tmp_path):
    big = Image.frombytes("I;16B", (2, 1), np.array([65535, 257], dtype=">u2").tobytes())
    assert load_rgb(_save(big, tmp_path / "b16.tif"))[..., 1].tolist() == [[255, 1]]
    wide = Image.fromarray(np.array([[65535, 70000, -5]], dtype=np.int32), "I")
    assert load_rgb(_save(wide, tmp_path / "i32.tif"))[..., 1].tolist() == [[255, 255, 0]]


def test_cmyk_and_float(tmp_path):
    cmyk = load_rgb(_save(Image.new("CMYK", (2, 2), (0, 255, 255, 0)), tmp_path / "cmyk.tif"))
    assert cmyk[0, 0].tolist() == [255, 0, 0]
    floats = Image.fromarray(np.array([[-5.0, 100.4, 300.0]], dtype=np.float32), "F")
    assert load_rgb(_save(floats, tmp_path / "f.tif"))[..., 0].tolist() == [[0, 100, 255]]


# Where the stored top-left and top-right pixels of a 20x10 image end up, per EXIF
# orientation, as (row, col) in the upright image; orientations 5..8 swap width and height.
ORIENTATIONS = {
    1: ((0, 0), (0, -1)),
    2: ((0, -1), (0, 0)),  # mirrored
    3: ((-1, -1), (-1, 0)),  # rotated 180
    4: ((-1, 0), (-1, -1)),  # flipped
    5: ((0, 0), (-1, 0)),  # transposed
    6: ((0, -1), (-1, -1)),  # stored rotated 90 counter-clockwise: shown rotated clockwise
    7: ((-1, -1), (0, -1)),  # transversed
    8: ((-1, 0), (0, 0)),  # stored rotated 90 clockwise
}


def _oriented(orientation: int) -> tuple[Image.Image, Image.Exif]:
    pixels = np.zeros((10, 20, 3), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0)
    pixels[0, -1] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return Image.fromarray(pixels), exif


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(tmp_path, orientation):
    image, exif = _oriented(orientation)
    path = _save(image, tmp_path / "o.png", exif=exif)
    out = load_rgb(path)
    expected_shape = (20, 10) if orientation >= 5 else (10, 20)
    assert out.shape[:2] == expected_shape
    assert read_image_size(path) == expected_shape
    red, green = ORIENTATIONS[orientation]
    assert out[red].tolist() == [255, 0, 0]
    assert out[green].tolist() == [0, 255, 0]
    assert int(out.sum()) == 2 * 255


def test_read_image_size_reads_jpeg_exif_from_the_header(tmp_path):
    image, exif = _oriented(6)
    path = _save(image, tmp_path / "o.jpg", exif=exif, quality=95)
    assert read_image_size(path) == (20, 10)
    assert load_rgb(path).shape == (20, 10, 3)


def _truncated_png(tmp_path: Path) -> Path:
    pixels = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    full = _save(Image.fromarray(pixels), tmp_path / "full.png").read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(full[: len(full) // 2])
    return path


def _one_line_naming(error: pytest.ExceptionInfo, path: Path, *words: str) -> None:
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(str(path))
    for word in words:
        assert word in text


def test_truncated_image_is_a_clear_error(tmp_path):
    path = _truncated_png(tmp_path)
    with pytest.raises(ImageDecodeError) as error:
        load_rgb(path)
    _one_line_naming(error, path, "truncated")
    assert error.value.path == str(path)
    # the header is intact: the size is still readable without decoding the pixels
    assert read_image_size(path) == (40, 48)


def test_not_an_image_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is text, not pixels")
    for read in (load_rgb, read_image_size):
        with pytest.raises(ImageDecodeError) as error:
            read(path)
        _one_line_naming(error, path, "not an image")


def test_missing_file_is_a_clear_error(tmp_path):
    path = tmp_path / "nowhere.png"
    for read in (load_rgb, read_image_size):
        with pytest.raises(DataError) as error:
            read(path)
        _one_line_naming(error, path, "not found")
    assert isinstance(error.value, ValueError)


def test_data_error_is_one_line_with_annotation_id():
    error = DataError("ann.json", "box [600.0, 10.0, 80.0, 40.0]\nextends past the 640x480 image", 17)
    assert str(error) == "ann.json: annotation 17: box [600.0, 10.0, 80.0, 40.0] extends past the 640x480 image"
    assert error.ann_id == 17 and error.path == "ann.json"


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
