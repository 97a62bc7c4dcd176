"""The painter protocol of the synthetic generators, and painting painters into images.

Geometry is in continuous image coordinates: pixel (row i, column j) covers
[j, j + 1) x [i, i + 1), so a point (x, y) lies in pixel (floor(y), floor(x)).
Objects are painted as *part labels* (small integers) into a window of the image;
textures turn labels into colours, and the window's non-zero labels are the
object's pixels, so the ground-truth mask is exactly what was painted.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

_SHIFT = 4  # cv2 fixed-point bits: drawing runs at 1/16 pixel precision
_ONE = 1 << _SHIFT
MIN_VISIBLE_PIXELS = 12  # objects with a smaller visible mask are removed and the image repainted


class PartCanvas:
    """Part labels of one object in the window [x0, x0 + w) x [y0, y0 + h) of an image."""

    def __init__(self, x0: int, y0: int, w: int, h: int) -> None:
        self.x0, self.y0 = x0, y0
        self.labels = np.zeros((h, w), np.uint8)  # [h, w], 0 = not this object

    def _fixed(self, points) -> np.ndarray:
        """Continuous image coordinates [..., 2] -> cv2 fixed point in the window (pixel centres)."""
        p = (np.asarray(points, np.float64) - (self.x0 + 0.5, self.y0 + 0.5)) * _ONE
        return np.round(p).astype(np.int32)

    def polygon(self, points, label: int) -> None:
        cv2.fillPoly(self.labels, [self._fixed(points).reshape(-1, 2)], int(label), cv2.LINE_8, _SHIFT)

    def disc(self, center, radius: float, label: int) -> None:
        c = self._fixed(center)
        cv2.circle(self.labels, (int(c[0]), int(c[1])), int(round(radius * _ONE)), int(label), -1, cv2.LINE_8, _SHIFT)

    def ellipse(self, center, half_axes, angle_deg: float, label: int) -> None:
        c = self._fixed(center)
        axes = (int(round(half_axes[0] * _ONE)), int(round(half_axes[1] * _ONE)))
        cv2.ellipse(self.labels, (int(c[0]), int(c[1])), axes, float(angle_deg), 0, 360, int(label), -1, cv2.LINE_8, _SHIFT)

    def capsule(self, p, q, r1: float, r2: float, label: int) -> None:
        """A tapered limb: discs of radius r1 at p and r2 at q joined by their tangent quad."""
        p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
        d = q - p
        length = float(np.hypot(*d))
        if length > 1e-6:
            n = np.array([-d[1], d[0]]) / length
            self.polygon([p + n * r1, q + n * r2, q - n * r2, p - n * r1], label)
        self.disc(p, r1, label)
        self.disc(q, r2, label)

    def set_pixel(self, point, label: int) -> None:
        """Paint the pixel that holds ``point`` if it is still empty and inside the window."""
        j, i = int(np.floor(point[0])) - self.x0, int(np.floor(point[1])) - self.y0
        if 0 <= i < self.labels.shape[0] and 0 <= j < self.labels.shape[1] and self.labels[i, j] == 0:
            self.labels[i, j] = label


class Painter(Protocol):
    """An object that paints itself as part labels and colours its parts (Figure, Shape, Restyled)."""

    seed: int  # texture and shading stream, so a repaint looks the same

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) enclosing everything ``paint`` may touch."""
        ...

    def paint(self, canvas: PartCanvas) -> None:
        """Paint part labels into ``canvas``."""
        ...

    def palette(self, rng: np.random.Generator) -> dict[int, tuple]:
        """Part label -> (texture kinds, RGB colour, grain or None)."""
        ...


def random_color(rng: np.random.Generator, saturation=(0.2, 1.0), value=(0.15, 1.0)) -> np.ndarray:
    """An RGB colour [3] float from random hue, saturation and value."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255, rng.uniform(*value) * 255]]], np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def texture(rng: np.random.Generator, h: int, w: int, color, kinds=("plain", "stripes", "checker", "noise", "dots"),
            grain: float | None = None) -> np.ndarray:
    """A [h, w, 3] uint8 RGB texture around ``color``: plain, stripes, checker, blotchy noise or dots."""
    out = np.empty((h, w, 3), np.float32)
    out[:] = color
    kind = kinds[rng.integers(len(kinds))]
    if kind != "plain":
        other = random_color(rng) if rng.random() < 0.6 else np.clip(np.asarray(color) * rng.uniform(0.4, 0.8), 0, 255)
        period = rng.uniform(2.5, 14.0)
        yy, xx = np.ogrid[0:h, 0:w]
        if kind == "stripes":
            a = rng.uniform(0, np.pi)
            t = (xx * np.cos(a) + yy * np.sin(a)) / period
            m = (np.floor(t) % 2 == 1) if rng.random() < 0.7 else (np.floor(t) % 4 == 1)
        elif kind == "checker":
            m = ((xx // period).astype(int) + (yy // period).astype(int)) % 2 == 1
        elif kind == "dots":
            m = ((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2 < (period * rng.uniform(0.15, 0.35)) ** 2
        else:
            cells = max(2, int(period))
            small = rng.random((h // cells + 2, w // cells + 2)).astype(np.float32)
            m = cv2.resize(small, (w + 2 * cells, h + 2 * cells), interpolation=cv2.INTER_CUBIC)[cells:cells + h, cells:cells + w] > 0.5
        out[np.broadcast_to(m, (h, w))] = other
    sigma = rng.uniform(1.0, 9.0) if grain is None else grain
    out += rng.standard_normal((h, w, 1), dtype=np.float32) * sigma
    return np.clip(out, 0, 255).astype(np.uint8)


def ops_bounds(ops: list, extra: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) enclosing the pixels that ``ops`` (and the points ``extra`` [N, 2]) may touch."""
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    if extra is not None and len(extra):
        lo, hi = extra.min(0), extra.max(0)
    for op in ops:
        kind = op[0]
        if kind == "polygon":
            pts, r = np.asarray(op[1]), 0.0
        elif kind == "capsule":
            pts, r = np.stack([op[1], op[2]]), max(op[3], op[4])
        elif kind == "disc":
            pts, r = np.asarray(op[1])[None], op[2]
        else:  # ellipse
            pts, r = np.asarray(op[1])[None], max(op[2])
        lo, hi = np.minimum(lo, pts.min(0) - r), np.maximum(hi, pts.max(0) + r)
    return float(lo[0]), float(lo[1]), float(hi[0]) + 1.0, float(hi[1]) + 1.0


def run_ops(canvas: PartCanvas, ops: list) -> None:
    """Paint ("polygon", pts, label) / ("capsule", p, q, r1, r2, label) / ("disc", c, r, label) / ("ellipse", c, axes, angle, label)."""
    for op in ops:
        getattr(canvas, op[0])(*op[1:])


def paint_object(image: np.ndarray, ids: np.ndarray | None, instance: int, obj: Painter) -> None:
    """Paint ``obj`` into ``image`` [H, W, 3] and (if given) its id ``instance`` into ``ids`` [H, W]."""
    h, w = image.shape[:2]
    bx0, by0, bx1, by1 = obj.bounds()
    x0, y0 = max(0, int(np.floor(bx0)) - 1), max(0, int(np.floor(by0)) - 1)
    x1, y1 = min(w, int(np.ceil(bx1)) + 1), min(h, int(np.ceil(by1)) + 1)
    if x1 <= x0 or y1 <= y0:
        return
    canvas = PartCanvas(x0, y0, x1 - x0, y1 - y0)
    obj.paint(canvas)
    labels = canvas.labels
    if not labels.any():
        return
    rng = np.random.default_rng(obj.seed)
    palette = obj.palette(rng)
    a = rng.uniform(0, 2 * np.pi)  # soft light across the object
    yy, xx = np.ogrid[0:y1 - y0, 0:x1 - x0]
    shade = 1.0 + rng.uniform(0, 0.25) * (np.cos(a) * xx + np.sin(a) * yy) / max(x1 - x0, y1 - y0)
    window = image[y0:y1, x0:x1]
    for label in np.flatnonzero(np.bincount(labels.ravel()))[1:]:
        kinds, color, grain = palette[label]  # each part's texture has its own stream: repaints look the same
        colors = texture(np.random.default_rng([obj.seed, label]), y1 - y0, x1 - x0, color, kinds, grain)
        m = labels == label
        window[m] = np.clip(colors[m] * shade[m][:, None], 0, 255).astype(np.uint8)
    if ids is not None:
        ids[y0:y1, x0:x1][labels > 0] = instance


def render_scene(background: np.ndarray, objects: list[Painter]) -> tuple[np.ndarray, np.ndarray, list]:
    """Paint objects over the background, removing those left with a tiny visible mask.

    Returns (image [H, W, 3] uint8, ids [H, W] uint16 with 0 = background and k = objects[k - 1],
    kept objects). Removing an object changes what others occlude, so the scene is repainted
    until every kept object shows at least ``MIN_VISIBLE_PIXELS``.
    """
    while True:
        image, ids = background.copy(), np.zeros(background.shape[:2], np.uint16)
        for k, obj in enumerate(objects, 1):
            paint_object(image, ids, k, obj)
        counts = np.bincount(ids.ravel(), minlength=len(objects) + 1)
        keep = [obj for k, obj in enumerate(objects, 1) if counts[k] >= MIN_VISIBLE_PIXELS]
        if len(keep) == len(objects):
            return image, ids, objects
        objects = keep


def degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera-like finish: contrast/brightness jitter, sensor noise, sometimes a slight blur."""
    out = image.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
    out += rng.standard_normal(out.shape, dtype=np.float32) * rng.uniform(0, 6)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (3, 3), 0.6)
    return np.clip(out, 0, 255).astype(np.uint8)
