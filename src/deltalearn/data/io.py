"""Data files: image listing, safe image and mask reading, image/mask pairing, atomic writes.

Image decoding: any file PIL reads becomes [H, W, 3] uint8 RGB, upright, or one clear error.
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

Masks: a mask file is decoded as an image (above), and a pixel is foreground when any of its
channels is at least ``FOREGROUND_THRESHOLD``. An image's mask is the file below the mask
folder with the image's relative path, any image suffix (``.png`` first), else the only mask
file of the image's stem.

Writes: a file is written to a temporary name beside its target, synced and renamed into
place, so the target is always whole or untouched; it gets the mode of a normal new file.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .errors import DataError, ImageDecodeError

BACKGROUND = (0, 0, 0)  # RGB that transparent pixels are composited onto
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")  # listed as images, any case
FOREGROUND_THRESHOLD = 128  # mask pixels with a channel >= this are foreground (masks are 0/255 PNGs)
MASK_SUFFIX = ".png"  # preferred when an image has masks of several suffixes

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")
# Orientations 5..8 swap width and height (transpose, rotations by 90 degrees).
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)
# What PIL raises on broken files, besides UnidentifiedImageError (an OSError).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
                  Image.DecompressionBombError)


# ---- listing --------------------------------------------------------------------------------


def image_root(data_dir: str | os.PathLike) -> Path:
    """``data_dir/images`` when it exists (the layout of ``mae synth``), else ``data_dir``."""
    data_dir = Path(data_dir)
    return data_dir / "images" if (data_dir / "images").is_dir() else data_dir


def mask_root(masks_dir: str | os.PathLike) -> Path:
    """``masks_dir/masks`` when it exists (a ``mae synth`` or ``mae segment`` folder), else ``masks_dir``."""
    masks_dir = Path(masks_dir)
    return masks_dir / "masks" if (masks_dir / "masks").is_dir() else masks_dir


def list_images(source: str | os.PathLike) -> list[Path]:
    """``source`` itself when it is a file, else the images below the folder ``source``
    (recursive, by suffix, sorted; possibly none). DataError when ``source`` does not exist."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(source, "no such image or folder")
    return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def find_images(root: str | os.PathLike) -> list[Path]:
    """Image files below the folder ``root`` (as ``list_images``); DataError when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "image folder not found")
    paths = list_images(root)
    if not paths:
        raise DataError(root, f"no images ({' '.join(IMAGE_SUFFIXES)}) in this folder or below")
    return paths


# ---- images ---------------------------------------------------------------------------------


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


# ---- masks ----------------------------------------------------------------------------------


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """[H, W] bool: pixels with any channel >= FOREGROUND_THRESHOLD after ``load_rgb``.

    Raises ImageDecodeError (one line naming the file) for a missing or undecodable file.
    """
    return load_rgb(path).max(axis=2) >= FOREGROUND_THRESHOLD


def match_masks(images: Iterable[Path], root: Path, masks: Path) -> dict[Path, Path | None]:
    """Each image below ``root`` -> its mask below ``masks`` (None: it has none), in the order of ``images``.

    The mask has the image's relative path without suffix (``.png`` preferred, else the first
    suffix in sorted order), else it is the only mask file of the image's stem. Images inside
    ``masks`` (a mask folder below the image folder) are left out.
    """
    by_path: dict[Path, Path] = {}
    stems: dict[str, list[Path]] = {}
    for path in list_images(masks) if masks.is_dir() else []:
        key = path.relative_to(masks).with_suffix("")
        if key not in by_path or path.suffix.lower() == MASK_SUFFIX:
            by_path[key] = path
        stems.setdefault(path.stem, []).append(path)
    inside = masks.resolve()
    matched: dict[Path, Path | None] = {}
    for image in images:
        if inside in image.resolve().parents:
            continue
        mask = by_path.get(image.relative_to(root).with_suffix(""))
        if mask is None and len(stems.get(image.stem, [])) == 1:
            mask = stems[image.stem][0]
        matched[image] = mask
    return matched


def pair_masks(images_dir: str | os.PathLike, masks_dir: str | os.PathLike) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(image, mask) pairs of the images below ``image_root(images_dir)`` and the masks below
    ``mask_root(masks_dir)`` (see ``match_masks``), and the images without a mask."""
    root, masks = image_root(images_dir), mask_root(masks_dir)
    if not masks.is_dir():
        raise DataError(masks, "mask folder not found")
    matched = match_masks(find_images(root), root, masks)
    pairs = [(image, mask) for image, mask in matched.items() if mask is not None]
    missing = [image for image, mask in matched.items() if mask is None]
    if not pairs:
        raise DataError(masks, f"no mask matches an image of {root} (masks pair with images by file name)")
    return pairs, missing


def encode_png(pixels: np.ndarray, compression: int | None = None) -> bytes:
    """PNG bytes of [H, W, 3] RGB or [H, W] gray uint8; ``compression`` 0..9 (None: OpenCV's default)."""
    if pixels.ndim == 3:
        pixels = pixels[..., ::-1]  # cv2 writes BGR
    params = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, compression]
    ok, png = cv2.imencode(".png", np.ascontiguousarray(pixels), params)
    if not ok:
        raise RuntimeError("could not encode a PNG")
    return png.tobytes()


def write_mask(mask: np.ndarray, path: str | os.PathLike) -> None:
    """[H, W] bool -> a 0/255 gray PNG at ``path``, atomically."""
    atomic_write_bytes(path, encode_png(mask.astype(np.uint8) * 255))


# ---- atomic writes --------------------------------------------------------------------------


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (``mkstemp`` gives 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it is synced to disk and
    renamed to ``path``, on failure removed, so ``path`` is always whole or untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, new_file_mode())
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``atomic_path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through ``atomic_path``."""
    atomic_write_bytes(path, text.encode("utf-8"))
