"""Safe image decoding: any file PIL reads becomes [H, W, 3] uint8 RGB, upright, or one clear error.

Conversions, by PIL mode:

- ``RGB``: as is. ``L``, ``1``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``: PIL's conversion.
- Modes with alpha (``RGBA``, ``LA``, ``PA``, ``RGBa``) and any image with a ``transparency``
  entry (palette or single-colour tRNS): alpha-composited onto ``BACKGROUND`` (black), so a
  half-transparent pixel is half as bright, never its raw colour.
- 16-bit (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``) and ``I`` (PIL's 32-bit integer mode, which
  holds 16-bit data from PNG/TIFF): the full 16-bit range maps to 8 bit, 65535 -> 255,
  ``v8 = round(v16 * 255 / 65535)``; ``I`` values outside 0..65535 are clipped. The range is
  that of the type, never stretched per image, so dark images stay dark.
- ``F`` (float): PIL's own convention for float-to-8-bit, values clipped to 0..255 and rounded.

EXIF orientation is applied (``ImageOps.exif_transpose``) so that pixel coordinates are those
of the image as a viewer shows it, which is what COCO annotations refer to.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import ImageDecodeError

BACKGROUND = (0, 0, 0)  # RGB that transparent pixels are composited onto

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")
# Orientations 5..8 swap width and height (transpose, rotations by 90 degrees).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
# What PIL raises on broken files, besides UnidentifiedImageError (an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
                  Image.DecompressionBombError)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to [H, W, 3] uint8 RGB, upright by its EXIF orientation.

    Raises ImageDecodeError (one line naming the file and the reason) for a missing file,
    a file that is not an image, a truncated or otherwise undecodable image.
    """
    path = Path(path)
    with _open(path) as image:
        try:
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb_array(image)
        except _DECODE_ERRORS as error:
            raise ImageDecodeError(path, f"cannot decode image ({_reason(error)})") from error


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of the upright image, from the header where the format allows it.

    A PNG whose EXIF block comes after the pixel data (rare; PNG 1.3 forbids it) is measured
    without its orientation, since finding that block means decoding the whole file.
    """
    path = Path(path)
    with _open(path) as image:
        try:
            width, height = image.size
            if _orientation(image) in _SWAPPING_ORIENTATIONS:
                width, height = height, width
        except _DECODE_ERRORS as error:
            raise ImageDecodeError(path, f"cannot read image header ({_reason(error)})") from error
    return height, width


def _open(path: Path) -> Image.Image:
    """Open lazily (header only) or raise ImageDecodeError."""
    if not path.exists():
        raise ImageDecodeError(path, "image file not found")
    if path.is_dir():
        raise ImageDecodeError(path, "is a directory, not an image file")
    try:
        return Image.open(path)
    except UnidentifiedImageError as error:
        raise ImageDecodeError(path, "not an image (format not recognised)") from error
    except _DECODE_ERRORS as error:
        raise ImageDecodeError(path, f"cannot open image ({_reason(error)})") from error


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8 without decoding pixels (1 when unknown)."""
    if isinstance(image, PngImagePlugin.PngImageFile) and not (
        {"exif", "Raw profile type exif"} & image.info.keys()
    ):
        return 1  # PngImageFile.getexif() would decode the whole image to look further
    return int(image.getexif().get(ExifTags.Base.Orientation, 1))


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """[H, W, 3] uint8 by the conversion rules in the module docstring."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64)
        gray = np.rint(np.clip(values, 0, 65535) * (255.0 / 65535.0))
        return _gray_to_rgb(gray)
    if mode == "F":
        return _gray_to_rgb(np.rint(np.clip(np.asarray(image, dtype=np.float64), 0, 255)))
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except ValueError as error:
        raise ValueError(f"unsupported image mode {mode}") from error


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """[H, W] values in 0..255 -> [H, W, 3] uint8."""
    return np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2)


def _reason(error: BaseException) -> str:
    """The exception's message on one line, or its type when it has none."""
    text = " ".join(str(error).split())
    return text or type(error).__name__
