"""Synthetic composites with foreground masks, for the MAE.

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
from pathlib import Path

import cv2
import numpy as np

from ..io import encode_png
from .figures import Figure, sample_figure
from .jobs import PNG_COMPRESSION, check_settings, run_jobs
from .painter import PartCanvas, degrade, random_color, render_scene, texture
from .people import sample_background
from .shapes import Shape, sample_ball, sample_distractor, sample_vehicle


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
MIN_SIZE = 16  # px: smallest image side
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


def _write_composite(job: tuple[str, int, int, int]) -> float:
    """Worker: render composite ``index``, write image and mask; returns its foreground share."""
    out_dir, seed, index, size = job
    image, foreground = make_composite(seed, index, size)
    Path(out_dir, "images", f"{index:06d}.png").write_bytes(encode_png(image, PNG_COMPRESSION))
    Path(out_dir, "masks", f"{index:06d}.png").write_bytes(encode_png(foreground.astype(np.uint8) * 255, PNG_COMPRESSION))
    return float(foreground.mean())


def generate_composites(out_dir: str | os.PathLike, num_images: int = 1000, size: int = 64, seed: int = 0,
                        workers: int | None = None, progress: bool = True) -> dict:
    """Write ``out_dir/images/NNNNNN.png`` and ``out_dir/masks/NNNNNN.png``; returns stats."""
    check_settings(num_images, size, seed, workers, MIN_SIZE, names=("--images", "--size", "--seed", "--workers"))
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
