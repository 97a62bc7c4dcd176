"""Safe image decoding: every PIL mode to upright [H, W, 3] uint8 RGB, or one clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deltalearn.data.errors import DataError, ImageDecodeError
from deltalearn.data.io import BACKGROUND, load_rgb, read_image_size


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
