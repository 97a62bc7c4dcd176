"""A synthetic video of people walking, with the ground truth of every frame and identity.

Each person is painted once (as in :mod:`.people`) and then moves, as a sprite, inside its
own column of the frame, so that persons never cross: a tracker must keep one identity per
person for the whole clip. ``tracks.json`` holds each frame's persons with their identity,
box and keypoints, for tests and for trying ``deltalearn mcn predict --source VIDEO --track``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_write_text
from ..video import VideoSink
from .figures import sample_figure
from .painter import render_scene
from .people import SCENES, sample_background

VIDEO_FILE = "video.mp4"
TRACKS_FILE = "tracks.json"
MAX_TRIES = 200  # figures sampled per person until one fits its column
NOISE = 3.0  # standard deviation of each frame's sensor noise (grey levels)


@dataclass
class Sprite:
    """One painted person: its pixels, their mask and its keypoints, relative to the sprite."""

    pixels: np.ndarray  # [h, w, 3] uint8
    mask: np.ndarray  # [h, w] bool
    keypoints: np.ndarray  # [17, 2] (x, y) in sprite pixels


def _sprite(rng: np.random.Generator, size: int, max_width: int, height: tuple[float, float]) -> Sprite:
    """A standing or walking person that fits ``max_width`` and the ``height`` range (pixels)."""
    blank = np.zeros((size, size, 3), np.uint8)
    for _ in range(MAX_TRIES):
        figure = sample_figure(rng, size, min_height=height[0])
        if figure.kind == "lying":
            continue
        _, ids, kept = render_scene(blank, [figure])
        if not kept:
            continue
        rows, cols = np.flatnonzero((ids == 1).any(1)), np.flatnonzero((ids == 1).any(0))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        inside = (figure.keypoints >= (x0, y0)).all() and (figure.keypoints < (x1, y1)).all()
        if x1 - x0 > max_width or not height[0] <= y1 - y0 <= height[1] or y0 == 0 or x0 == 0 or not inside:
            continue  # too wide, too short or tall, or cut by the canvas edge
        image, _, _ = render_scene(np.full((size, size, 3), 0, np.uint8), [figure])
        return Sprite(image[y0:y1, x0:x1].copy(), ids[y0:y1, x0:x1] == 1, figure.keypoints - (x0, y0))
    raise RuntimeError(f"no person of {height} px fitted a {max_width} px column in {MAX_TRIES} tries")


def generate_people_video(out_dir: str | Path, frames: int = 48, size: int = 128, persons: int = 3,
                          fps: float = 10.0, seed: int = 0, scene: str = "simple") -> dict:
    """Write ``out_dir/video.mp4`` (``frames`` frames of ``size`` px at ``fps``) and
    ``out_dir/tracks.json``: ``{"fps", "size", "frames": [{"frame", "persons": [{"track_id",
    "bbox" (xyxy), "keypoints" [[x, y], ...]}]}]}``. Returns the tracks."""
    if persons < 1 or frames < 1 or size < 32:
        raise ValueError(f"need persons >= 1, frames >= 1 and size >= 32, got {persons}, {frames}, {size}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng([seed, 7])
    background = sample_background(rng, size, SCENES[scene])
    column = size // persons
    sprites = [_sprite(rng, size, int(0.8 * column), (0.3 * size, 0.6 * size)) for _ in range(persons)]
    phases = rng.uniform(0, 2 * np.pi, persons)
    speeds = rng.uniform(0.6, 1.2, persons) * 2 * np.pi / max(frames, 8)  # about one swing per clip
    tracks: dict = {"fps": fps, "size": size, "frames": []}
    out_dir.mkdir(parents=True, exist_ok=True)
    with VideoSink(out_dir / VIDEO_FILE, fps) as sink:
        for index in range(frames):
            image = background.copy()
            persons_now = []
            for k, sprite in enumerate(sprites):
                h, w = sprite.mask.shape
                swing = np.sin(phases[k] + speeds[k] * index)
                x = int(round(k * column + (column - w) / 2 + 0.2 * (column - w) * swing))
                y = int(round((size - h) / 2 + 0.35 * (size - h) * np.cos(phases[k] + speeds[k] * index)))
                image[y:y + h, x:x + w][sprite.mask] = sprite.pixels[sprite.mask]
                persons_now.append({"track_id": k + 1, "bbox": [x, y, x + w, y + h],
                                    "keypoints": np.round(sprite.keypoints + (x, y), 2).tolist()})
            noise = np.random.default_rng([seed, 8, index]).normal(0.0, NOISE, image.shape)
            sink.write(np.clip(image + noise, 0, 255).astype(np.uint8))  # sensor noise, no flicker
            tracks["frames"].append({"frame": index, "persons": persons_now})
    atomic_write_text(out_dir / TRACKS_FILE, json.dumps(tracks) + "\n")
    return tracks
