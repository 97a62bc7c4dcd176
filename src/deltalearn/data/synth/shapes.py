"""Non-person objects: vehicles, balls and unannotated distractors, as ``Shape`` painters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .painter import PartCanvas, ops_bounds, random_color, run_ops


@dataclass
class Shape:
    """A non-person object (vehicle, ball) or an unannotated distractor: painting ops and textures."""

    ops: list
    colors: dict  # part label -> (texture kinds, RGB colour, grain or None)
    seed: int
    category: str = "distractor"
    keypoints: np.ndarray | None = None  # only people have keypoints

    def bounds(self) -> tuple[float, float, float, float]:
        return ops_bounds(self.ops)

    def paint(self, canvas: PartCanvas) -> None:
        run_ops(canvas, self.ops)

    def palette(self, rng: np.random.Generator) -> dict[int, tuple]:
        return self.colors


def _transform(points, center, scale: float, angle_deg: float, mirror: bool = False) -> np.ndarray:
    """Local shape coordinates [..., 2] -> image: optional mirror, rotation, scale, translation."""
    p = np.asarray(points, np.float64) * ([-1.0, 1.0] if mirror else [1.0, 1.0])
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    return p @ np.array([[c, s], [-s, c]]) * scale + center


def sample_vehicle(rng: np.random.Generator, size: int) -> Shape:
    """A car or van in side view: body, cabin with windows, two wheels, lights; may be mirrored."""
    u = rng.uniform
    length = float(np.exp(u(np.log(24), np.log(0.9 * size))))
    r = u(0.1, 0.14)  # wheel radius; local units: length 1, x in [-0.5, 0.5], ground at y = 0
    top, bottom = -u(0.28, 0.4), -r * u(0.35, 0.6)
    body = [(-0.5, bottom), (-0.5, top + 0.06), (-0.46, top), (0.42, top), (0.5, top + u(0.04, 0.1)), (0.5, bottom)]
    roof = top - u(0.14, 0.3 if rng.random() < 0.7 else 0.42)
    c0, c1 = u(-0.35, -0.15), u(0.1, 0.35)
    cabin = [(c0, top), (c0 + u(0.02, 0.1), roof), (c1 - u(0.05, 0.16), roof), (c1, top)]
    inset = np.array([[0.03, -0.02], [0.03, 0.025], [-0.03, 0.025], [-0.03, -0.02]])
    window = np.array(cabin) + inset
    pillar = (window[0, 0] + window[3, 0]) / 2
    wheels = [(-0.5 + u(0.16, 0.22), -r), (0.5 - u(0.16, 0.22), -r)]
    center = rng.uniform(-0.1, 1.1, 2) * size
    angle, mirror = u(-5, 5), bool(rng.random() < 0.5)

    def T(pts):
        return _transform(pts, center, length, angle, mirror)

    ops = [("polygon", T(body), 1), ("polygon", T(cabin), 1)]
    split = [window[0], window[1], (pillar - 0.01, window[1, 1]), (pillar - 0.01, window[0, 1])]
    ops += [("polygon", T(split), 2), ("polygon", T([(pillar + 0.01, window[0, 1]), (pillar + 0.01, window[1, 1]), window[2], window[3]]), 2)]
    for w in wheels:
        ops += [("disc", T([w])[0], r * length, 3), ("disc", T([w])[0], 0.5 * r * length, 4)]
    ops.append(("polygon", T([(0.47, top + 0.1), (0.5, top + 0.1), (0.5, top + 0.16), (0.47, top + 0.16)]), 5))
    colors = {
        1: (("plain", "plain", "noise", "stripes"), random_color(rng), None),
        2: (("plain",), np.array([150, 185, 210]) * u(0.5, 1.1), None),
        3: (("plain",), np.full(3, u(10, 50)), None),
        4: (("plain", "dots"), np.full(3, u(120, 220)), None),
        5: (("plain",), np.array([255, 230, 120]), None),
    }
    return Shape(ops, colors, int(rng.integers(2**62)), "vehicle")


def sample_ball(rng: np.random.Generator, size: int) -> Shape:
    """A disc with a pattern: beach-ball sectors, spots, a band or a highlight."""
    radius = float(np.exp(rng.uniform(np.log(2.5), np.log(0.12 * size))))
    center = rng.uniform(-0.05, 1.05, 2) * size
    ops: list = [("disc", center, radius, 1)]
    pattern = rng.integers(4)
    if pattern == 0:  # sectors
        n, start = int(rng.integers(3, 5)), rng.uniform(0, np.pi)
        for k in range(n):
            a = start + np.linspace(0, np.pi / n, 6) + 2 * np.pi * k / n
            fan = np.concatenate([[center], center + radius * 0.97 * np.stack([np.cos(a), np.sin(a)], 1)])
            ops.append(("polygon", fan, 2))
    elif pattern == 1:  # spots inside the disc
        for _ in range(int(rng.integers(3, 7))):
            rho, phi = rng.uniform(0, 0.6) * radius, rng.uniform(0, 2 * np.pi)
            ops.append(("disc", center + rho * np.array([np.cos(phi), np.sin(phi)]), 0.22 * radius, 2))
    elif pattern == 2:  # band through the centre, kept inside the disc by a chord polygon
        a = rng.uniform(0, np.pi) + np.array([-0.35, 0.35, np.pi - 0.35, np.pi + 0.35])
        ops.append(("polygon", center + radius * 0.95 * np.stack([np.cos(a), np.sin(a)], 1), 2))
    else:  # highlight
        ops.append(("disc", center - 0.35 * radius, 0.3 * radius, 2))
    colors = {1: (("plain", "noise"), random_color(rng, value=(0.4, 1.0)), None), 2: (("plain",), random_color(rng), None)}
    return Shape(ops, colors, int(rng.integers(2**62)), "ball")


def sample_distractor(rng: np.random.Generator, size: int) -> Shape:
    """An unannotated clutter shape: rectangle, ellipse, polygon, or a limb-like bar or bent bar."""
    c = rng.uniform(-0.1, 1.1, 2) * size
    s = float(np.exp(rng.uniform(np.log(4), np.log(0.5 * size))))
    kind = rng.integers(5)
    if kind == 0:
        pts = _transform([(-1, -1), (1, -1), (1, 1), (-1, 1)] * np.array([1.0, rng.uniform(0.1, 1.0)]), c, s, rng.uniform(0, 180))
        ops = [("polygon", pts, 1)]
    elif kind == 1:
        ops = [("ellipse", c, (s, s * rng.uniform(0.2, 1.0)), rng.uniform(0, 180), 1)]
    elif kind == 2:
        a = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
        ops = [("polygon", c + s * rng.uniform(0.4, 1.0, (len(a), 1)) * np.stack([np.cos(a), np.sin(a)], 1), 1)]
    else:  # bars as thick as a limb, sometimes bent like an arm or a leg
        s *= 0.6
        width = s * rng.uniform(0.06, 0.2)
        joints = [c]
        direction = rng.uniform(0, 2 * np.pi)
        for _ in range(1 if kind == 3 else 2):
            joints.append(joints[-1] + s * np.array([np.cos(direction), np.sin(direction)]))
            direction += rng.uniform(-1.5, 1.5)
        ops = [("capsule", p, q, width, width * rng.uniform(0.6, 1.0), 1) for p, q in zip(joints, joints[1:])]
    return Shape(ops, {1: (("plain", "stripes", "checker", "noise", "dots"), random_color(rng), None)}, int(rng.integers(2**62)))
