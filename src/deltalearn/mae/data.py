"""MAE data: any folder of images as a dataset, and synthetic composites with foreground masks.

Images enter the model as ImageNet-normalised float tensors [3, H, W] (the official MAE
input, so official checkpoints and ours share one pipeline); ``denormalize`` maps back.

``generate_composites`` writes ``images/NNNNNN.png`` and ``masks/NNNNNN.png`` (0 background,
255 foreground): objects of the people generator (figures, vehicles, balls, textured
shapes) restyled so that their statistics differ from the background's in varied ways:
a plain object on a noisy background, a noisy or textured one on a smooth background,
sometimes in the background's own colour so that only texture tells them apart. Each
image draws from ``default_rng([seed, index])``: the same seed gives the same bytes,
whatever the number of worker processes.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor
from torchvision.transforms import v2
from tqdm import tqdm

from ..data.errors import DataError, DataWarning, ImageDecodeError
from ..data.figures import Figure, PartCanvas, random_color, sample_figure, texture
from ..data.images import load_rgb
from ..data.synthetic import (
    Shape,
    degrade,
    render_scene,
    run_jobs,
    sample_background,
    sample_ball,
    sample_distractor,
    sample_vehicle,
)
from .config import MAEDataConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
PNG_COMPRESSION = 1  # fixed, so the same seed gives the same bytes


# ---- images as model input ---------------------------------------------------------------


def train_transform(config: MAEDataConfig) -> v2.Compose:
    """uint8 [3, H, W] -> normalised float [3, S, S]: RandomResizedCrop, horizontal flip."""
    return v2.Compose([
        v2.RandomResizedCrop(config.image_size, scale=config.crop_scale, ratio=config.crop_ratio,
                             interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(config.flip),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    ])


def eval_transform(image_hw: tuple[int, int]) -> v2.Compose:
    """uint8 [3, H, W] -> normalised float [3, *image_hw]: the whole image resized (aspect not kept)."""
    return v2.Compose([
        v2.Resize(image_hw, antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    ])


def denormalize(images: Tensor) -> Tensor:
    """Normalised [N, 3, H, W] (or [3, H, W]) -> RGB in [0, 1] (not clipped)."""
    shape = (3, 1, 1)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=images.device).view(shape)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=images.device).view(shape)
    return images.float() * std + mean


# ---- image folders -----------------------------------------------------------------------


def image_root(data_dir: str | os.PathLike) -> Path:
    """``data_dir/images`` when it exists (the layout of ``mae synth``), else ``data_dir``."""
    data_dir = Path(data_dir)
    return data_dir / "images" if (data_dir / "images").is_dir() else data_dir


def find_images(root: str | os.PathLike) -> list[Path]:
    """Image files below ``root`` (recursive, by suffix), sorted; DataError when there are none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "image folder not found")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DataError(root, f"no images ({' '.join(IMAGE_SUFFIXES)}) in this folder or below")
    return paths


class ImageFolder(torch.utils.data.Dataset):
    """Every image below ``root``, decoded safely, as ``transform(uint8 [3, H, W])``.

    An unreadable image is skipped: one warning and an entry in ``skipped`` (path -> reason;
    kept by the process that decoded it, so with DataLoader workers the warnings are the
    record). With ``cache`` every image is decoded once here, bad ones leave the dataset
    and ``skipped`` is complete; without it a bad image is replaced by the next readable one.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable[[Tensor], Tensor] | None = None,
                 cache: bool = False) -> None:
        self.root = Path(root)
        self.paths = find_images(self.root)
        self.transform = transform
        self.skipped: dict[str, str] = {}
        self._pixels: list[np.ndarray] | None = None
        if cache:
            decoded = [(path, self.decode(path)) for path in tqdm(self.paths, desc="decoding", unit="img", leave=False)]
            self.paths = [path for path, pixels in decoded if pixels is not None]
            self._pixels = [pixels for _, pixels in decoded if pixels is not None]
            if not self.paths:
                raise DataError(self.root, "no readable image in this folder or below")

    def __len__(self) -> int:
        return len(self.paths)

    def decode(self, path: Path) -> np.ndarray | None:
        """[H, W, 3] uint8, or None (warned and recorded once) for a bad image."""
        try:
            pixels = load_rgb(path)
        except ImageDecodeError as error:
            if str(path) not in self.skipped:
                self.skipped[str(path)] = error.problem
                warnings.warn(f"skipping image: {error}", DataWarning, stacklevel=2)
            return None
        return pixels if pixels.flags.writeable else pixels.copy()  # torch.from_numpy wants writable memory

    def pixels(self, index: int) -> np.ndarray:
        """[H, W, 3] uint8 of image ``index``, or of the next readable one after it."""
        if self._pixels is not None:
            return self._pixels[index]
        for step in range(len(self.paths)):
            pixels = self.decode(self.paths[(index + step) % len(self.paths)])
            if pixels is not None:
                return pixels
        raise DataError(self.root, "no readable image in this folder or below")

    def __getitem__(self, index: int) -> Tensor:
        image = torch.from_numpy(self.pixels(index)).permute(2, 0, 1).contiguous()  # [3, H, W] uint8
        return self.transform(image) if self.transform is not None else image


# ---- synthetic composites ------------------------------------------------------------------

BACKGROUND_STYLES = ("smooth", "textured", "noisy", "cluttered")
# object styles that contrast with each background style (drawn uniformly)
OBJECT_STYLES = {
    "smooth": ("textured", "noisy", "noisy", "plain"),
    "textured": ("plain", "noisy", "textured"),
    "noisy": ("plain", "plain", "textured"),
    "cluttered": ("plain", "textured", "noisy"),
}
TEXTURES = ("stripes", "checker", "dots", "noise")
CAMOUFLAGE = 0.3  # share of images whose objects take the background's mean colour
MAX_OBJECTS = 3  # objects per image: 1 .. MAX_OBJECTS
FOREGROUND_RANGE = (0.04, 0.7)  # share of foreground pixels a composite aims for
MAX_TRIES = 20  # object draws per image before the last one is kept whatever its share


def sample_plain_background(rng: np.random.Generator, size: int, style: str) -> np.ndarray:
    """A [size, size, 3] float background: smooth (gradient, soft blobs), textured or noisy."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a = rng.uniform(0, 2 * np.pi)
    t = (np.cos(a) * xx + np.sin(a) * yy)[..., None]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    strength = rng.uniform(0, 1)  # of the gradient towards a second colour
    image = random_color(rng) * (1 - strength * t) + random_color(rng) * (strength * t)
    cells = int(rng.integers(2, 6))
    image += cv2.resize(rng.standard_normal((cells, cells, 3)).astype(np.float32), (size, size),
                        interpolation=cv2.INTER_CUBIC) * rng.uniform(0, 25)
    if style == "textured":
        pattern = texture(rng, size, size, random_color(rng), kinds=TEXTURES, grain=rng.uniform(1, 6))
        image = image * rng.uniform(0, 0.4) + pattern.astype(np.float32) * rng.uniform(0.6, 1.0)
    elif style == "noisy":
        sigma = rng.uniform(18, 45)
        image += rng.standard_normal((size, size, 1 if rng.random() < 0.5 else 3)).astype(np.float32) * sigma
    return np.clip(image, 0, 255)


class Restyled:
    """An object of the people generator with its part textures replaced by one style."""

    def __init__(self, obj: Figure | Shape, style: str, rng: np.random.Generator, color: np.ndarray | None) -> None:
        self.obj, self.style, self.color = obj, style, color
        self.grain = {"plain": rng.uniform(0.3, 2.5), "textured": rng.uniform(1, 5), "noisy": rng.uniform(18, 40)}[style]
        self.seed = obj.seed

    def bounds(self) -> tuple[float, float, float, float]:
        return self.obj.bounds()

    def paint(self, canvas: PartCanvas) -> None:
        self.obj.paint(canvas)

    def palette(self, rng: np.random.Generator) -> dict[int, tuple]:
        kinds = {"plain": ("plain",), "textured": TEXTURES, "noisy": ("plain", "plain", "noise")}[self.style]
        parts = self.obj.palette(rng)
        if self.color is not None:  # camouflage: the background's colour, jittered per part
            return {label: (kinds, np.clip(self.color + rng.normal(0, 12, 3), 0, 255), self.grain) for label in parts}
        return {label: (kinds, color, self.grain) for label, (_, color, _) in parts.items()}


def sample_composite_objects(rng: np.random.Generator, size: int, style: str, color: np.ndarray | None) -> list:
    """1 .. MAX_OBJECTS restyled objects: figures, vehicles, balls and textured shapes."""
    samplers = (sample_figure, sample_vehicle, sample_ball, sample_distractor)
    kinds = rng.choice(len(samplers), size=int(rng.integers(1, MAX_OBJECTS + 1)), p=(0.4, 0.15, 0.15, 0.3))
    return [Restyled(samplers[k](rng, size), style, rng, color) for k in kinds]


def compose_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(background, image before the camera finish, foreground mask [size, size] bool), RGB uint8."""
    background_style = BACKGROUND_STYLES[rng.integers(len(BACKGROUND_STYLES))]
    if background_style == "cluttered":
        background = sample_background(rng, size)
    else:
        background = sample_plain_background(rng, size, background_style).astype(np.uint8)
    styles = OBJECT_STYLES[background_style]
    object_style = styles[rng.integers(len(styles))]
    color = background.reshape(-1, 3).mean(0) if rng.random() < CAMOUFLAGE else None
    for _ in range(MAX_TRIES):
        objects = sample_composite_objects(rng, size, object_style, color)
        image, ids, _ = render_scene(background, objects)
        foreground = ids > 0
        if FOREGROUND_RANGE[0] <= foreground.mean() <= FOREGROUND_RANGE[1]:
            break
    return background, image, foreground


def make_composite(seed: int, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite ``index`` of ``seed``: (RGB image [size, size, 3] uint8, foreground mask [size, size] bool)."""
    rng = np.random.default_rng([seed, index])
    _, image, foreground = compose_scene(rng, size)
    return degrade(rng, image), foreground


def _encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of [H, W, 3] RGB or [H, W] gray uint8, at a fixed compression level."""
    if pixels.ndim == 3:
        pixels = pixels[..., ::-1]  # cv2 writes BGR
    ok, png = cv2.imencode(".png", np.ascontiguousarray(pixels), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RuntimeError("could not encode a PNG")
    return png.tobytes()


def _write_composite(job: tuple[str, int, int, int]) -> float:
    """Worker: render composite ``index``, write image and mask; returns its foreground share."""
    out_dir, seed, index, size = job
    image, foreground = make_composite(seed, index, size)
    Path(out_dir, "images", f"{index:06d}.png").write_bytes(_encode_png(image))
    Path(out_dir, "masks", f"{index:06d}.png").write_bytes(_encode_png(foreground.astype(np.uint8) * 255))
    return float(foreground.mean())


def generate_composites(out_dir: str | os.PathLike, num_images: int = 1000, size: int = 64, seed: int = 0,
                        workers: int | None = None, progress: bool = True) -> dict:
    """Write ``out_dir/images/NNNNNN.png`` and ``out_dir/masks/NNNNNN.png``; returns stats."""
    if num_images < 0:
        raise ValueError(f"--images must be >= 0, got {num_images}")
    if size < 16:
        raise ValueError(f"--size must be at least 16 pixels, got {size}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    start = time.perf_counter()
    for sub in ("images", "masks"):
        Path(out_dir, sub).mkdir(parents=True, exist_ok=True)
    jobs = [(str(out_dir), seed, index, size) for index in range(num_images)]
    workers = min(workers or os.cpu_count() or 1, max(num_images, 1))
    shares = run_jobs(_write_composite, jobs, workers, progress, desc="mae synth")
    seconds = time.perf_counter() - start
    return {
        "images": num_images,
        "size": size,
        "seed": seed,
        "workers": workers,
        "seconds": round(seconds, 3),
        "images_per_s": round(num_images / seconds, 1) if seconds > 0 else None,
        "mean_foreground": round(float(np.mean(shares)), 4) if shares else None,
    }
