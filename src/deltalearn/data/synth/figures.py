"""Articulated people: posed 3D skeleton, projection, body-part painting ops (``Figure``, a Painter)."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from .painter import PartCanvas, ops_bounds, random_color, run_ops

KP = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# Body proportions in units of standing height (soles to top of head); x to the figure's
# left, y down, z forward (towards the camera when the figure faces it).
HIP_HALF_WIDTH = 0.085
SHOULDER_HALF_WIDTH = 0.11
TORSO_LENGTH = 0.29  # mid-hip to mid-shoulder
NECK_TO_HEAD_CENTER = 0.115
UPPER_ARM, FOREARM, HAND = 0.17, 0.15, 0.065
THIGH, SHIN, FOOT = 0.245, 0.245, 0.12
HEAD_HALF_WIDTH, HEAD_HALF_HEIGHT = 0.05, 0.066
CHEST_HALF_DEPTH = 0.06
# Face points relative to the head center (same axes as the body).
FACE_POINTS = {
    "nose": (0.0, 0.014, 0.062),
    "left_eye": (0.022, -0.006, 0.046),
    "right_eye": (-0.022, -0.006, 0.046),
    "left_ear": (0.054, 0.002, -0.004),
    "right_ear": (-0.054, 0.002, -0.004),
}
# Limb radii (proximal, distal), in units of height; scaled by the figure's build.
LIMB_RADII = {
    "upper_arm": (0.037, 0.029),
    "forearm": (0.029, 0.022),
    "thigh": (0.058, 0.04),
    "shin": (0.038, 0.027),
    "neck": (0.026, 0.026),
    "foot": (0.022, 0.02),
    "hand": (0.024, 0.02),
}

# Part labels painted into a figure's window.
SHIRT, TROUSERS, SKIN, HAIR, SHOES, EYES = 1, 2, 3, 4, 5, 6

POSE_KINDS = ("standing", "walking", "arms_raised", "sitting", "lying")
_POSE_WEIGHTS = (0.25, 0.25, 0.15, 0.15, 0.2)


def _direction(side: float, abduction: float, flexion: float) -> np.ndarray:
    """Unit vector of a limb hanging down, swung out by ``abduction`` and forward by ``flexion`` (degrees)."""
    a, f = np.radians(abduction), np.radians(flexion)
    return np.array([side * np.sin(a), np.cos(a) * np.cos(f), np.cos(a) * np.sin(f)])


def _rot_x(v: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate points [..., 3] about the x axis (positive tips a downward vector forward)."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([x, y * c - z * s, y * s + z * c], -1)


def _rot_y(v: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate points [..., 3] about the vertical axis (positive turns the front to the image right)."""
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([x * c + z * s, y, -x * s + z * c], -1)


def sample_pose(rng: np.random.Generator, kind: str) -> dict[str, float]:
    """Joint angles in degrees: (abduction, flexion) per limb, torso lean, head yaw/pitch."""
    u = rng.uniform
    p: dict[str, float] = {"lean": u(-5, 8), "head_yaw": u(-25, 25), "head_pitch": u(-12, 12)}
    for side in "lr":  # relaxed standing, refined below
        p[f"arm_{side}"] = (u(4, 22), u(-15, 20))
        p[f"fore_{side}"] = (p[f"arm_{side}"][0] + u(-5, 8), p[f"arm_{side}"][1] + u(0, 45))
        p[f"thigh_{side}"] = (u(0, 10), u(-5, 10))
        p[f"shin_{side}"] = (p[f"thigh_{side}"][0] - u(0, 4), p[f"thigh_{side}"][1] - u(0, 10))
    if kind == "walking":
        phase, stride, swing = u(0, 2 * np.pi), u(15, 35), u(10, 40)
        for side, sign in (("l", 1.0), ("r", -1.0)):
            thigh = sign * stride * np.sin(phase)
            p[f"thigh_{side}"] = (u(0, 6), thigh)
            p[f"shin_{side}"] = (p[f"thigh_{side}"][0], thigh - u(5, 55))
            arm = -sign * swing * np.sin(phase)
            p[f"arm_{side}"] = (u(3, 12), arm)
            p[f"fore_{side}"] = (p[f"arm_{side}"][0], arm + u(10, 55))
        p["lean"] = u(0, 10)
    elif kind == "arms_raised":
        for side in "lr":
            if rng.random() < 0.8:
                arm = (u(80, 175), u(-20, 20))
                p[f"arm_{side}"] = arm
                p[f"fore_{side}"] = (arm[0] + u(-50, 25), arm[1] + u(-10, 20))
        p["lean"] = u(-5, 5)
    elif kind == "sitting":
        for side in "lr":
            thigh = (u(0, 20), u(70, 100))
            p[f"thigh_{side}"] = thigh
            p[f"shin_{side}"] = (thigh[0] + u(-5, 5), thigh[1] - u(60, 110))
            arm = (u(0, 20), u(0, 50))
            p[f"arm_{side}"] = arm
            p[f"fore_{side}"] = (arm[0] + u(-10, 5), arm[1] + u(20, 90))
        p["lean"] = u(-5, 20)
    return p


def skeleton_3d(pose: dict[str, float], build: float) -> dict[str, np.ndarray]:
    """Joints and drawing points in body units (standing height 1), root at mid-hip."""
    pts: dict[str, np.ndarray] = {}
    for side, s in (("left", 1.0), ("right", -1.0)):
        k = side[0]
        shoulder = np.array([s * SHOULDER_HALF_WIDTH * build, -TORSO_LENGTH, 0.0])
        elbow = shoulder + UPPER_ARM * _direction(s, *pose[f"arm_{k}"])
        fore = _direction(s, *pose[f"fore_{k}"])
        pts[f"{side}_shoulder"], pts[f"{side}_elbow"] = shoulder, elbow
        pts[f"{side}_wrist"] = elbow + FOREARM * fore
        pts[f"{side}_hand"] = pts[f"{side}_wrist"] + HAND * fore
        hip = np.array([s * HIP_HALF_WIDTH * build, 0.0, 0.0])
        knee = hip + THIGH * _direction(s, *pose[f"thigh_{k}"])
        shin_flexion = pose[f"shin_{k}"][1]
        ankle = knee + SHIN * _direction(s, *pose[f"shin_{k}"])
        foot = _rot_x(np.array([0.0, 0.25, 1.0]) / np.hypot(0.25, 1.0), shin_flexion)
        pts[f"{side}_hip"], pts[f"{side}_knee"], pts[f"{side}_ankle"] = hip, knee, ankle
        pts[f"{side}_heel"], pts[f"{side}_toe"] = ankle - 0.03 * foot, ankle + FOOT * foot
    neck = np.array([0.0, -TORSO_LENGTH, 0.0])
    head = neck + np.array([0.0, -NECK_TO_HEAD_CENTER, 0.008])
    pts["neck"], pts["head"] = neck, head
    for name, offset in FACE_POINTS.items():
        local = _rot_y(_rot_x(np.array(offset), -pose["head_pitch"]), pose["head_yaw"])
        pts[name] = head + local
    pts["face"] = head + _rot_y(np.array([0.0, 0.012, 0.012]), pose["head_yaw"])
    upper = [n for n in pts if not any(t in n for t in ("hip", "knee", "ankle", "heel", "toe"))]
    for name in upper:  # the upper body leans forward about the hips
        pts[name] = _rot_x(pts[name], -pose["lean"])
    k = 0  # torso box corners: chest at the shoulders, waist at the hips, front and back
    for side, s in (("left", 1.0), ("right", -1.0)):
        for z in (-CHEST_HALF_DEPTH, CHEST_HALF_DEPTH):
            pts[f"torso_{k}"] = pts[f"{side}_shoulder"] + _rot_x(np.array([s * 0.02, 0.015, z]), -pose["lean"])
            pts[f"torso_{k + 1}"] = pts[f"{side}_hip"] + np.array([s * 0.015, 0.03, z * 0.9])
            k += 2
    return pts


@dataclass
class Figure:
    """One posed person: drawing operations and keypoints in image pixels."""

    keypoints: np.ndarray  # [17, 2] float, rounded to 1/100 pixel
    ops: list = field(default_factory=list)  # (kind, args..., label) in painting order
    keypoint_labels: tuple[int, ...] = ()  # [17] part label that owns each joint's pixel
    seed: int = 0  # texture stream, so a repaint looks the same
    kind: str = "standing"
    category: str = "person"

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) enclosing everything ``paint`` may touch."""
        return ops_bounds(self.ops, self.keypoints)

    def paint(self, canvas: PartCanvas) -> None:
        run_ops(canvas, self.ops)
        for point, label in zip(self.keypoints, self.keypoint_labels):
            canvas.disc(point, 0.6, label)
            canvas.set_pixel(point, label)  # every joint lies on its own figure

    def palette(self, rng: np.random.Generator) -> dict[int, tuple]:
        """Part label -> (texture kinds, RGB colour, grain or None): skin tone, hair, clothes."""
        tone = rng.uniform(0, 1)
        skin = np.array([255, 224, 196]) * (1 - tone) + np.array([92, 58, 40]) * tone + rng.normal(0, 8, 3)
        hair = np.array([[20, 16, 14], [80, 50, 30], [200, 170, 110], [150, 150, 150], [150, 70, 30]])[rng.integers(5)]
        return {
            SHIRT: (("plain", "stripes", "checker", "noise", "dots"), random_color(rng), None),
            TROUSERS: (("plain", "plain", "stripes", "checker", "noise"), random_color(rng, value=(0.1, 0.8)), None),
            SKIN: (("plain",), np.clip(skin, 0, 255), 3.0),
            HAIR: (("plain", "noise"), hair, None),
            SHOES: (("plain",), random_color(rng, value=(0.05, 0.5)), None),
            EYES: (("plain",), (25, 20, 20), 2.0),
        }


def sample_figure(rng: np.random.Generator, image_size: int, min_height: float = 20.0) -> Figure:
    """A random person: pose, facing, scale (``min_height`` px up to most of the image), position, clothes."""
    kind = POSE_KINDS[rng.choice(len(POSE_KINDS), p=_POSE_WEIGHTS)]
    pose = sample_pose(rng, POSE_KINDS[rng.integers(4)] if kind == "lying" else kind)
    facing = rng.random()
    yaw = rng.uniform(-25, 25) if facing < 0.4 else rng.choice([-1, 1]) * (rng.uniform(65, 100) if facing < 0.8 else rng.uniform(25, 65))
    roll = rng.choice([-1, 1]) * rng.uniform(70, 110) if kind == "lying" else rng.uniform(-8, 8)
    height = float(np.exp(rng.uniform(np.log(min_height), np.log(max(0.95 * image_size, min_height)))))
    build = rng.uniform(0.85, 1.2)
    pts3 = skeleton_3d(pose, build)
    names = list(pts3)
    v = _rot_y(np.stack([pts3[n] for n in names]), yaw)  # [P, 3], z = depth towards the camera
    c, s = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    xy = v[:, :2] @ np.array([[c, s], [-s, c]]) * height  # in-plane rotation, then scale
    center = xy.min(0) + (xy.max(0) - xy.min(0)) / 2
    extent = xy.max(0) - xy.min(0)
    target = rng.uniform(-0.3 * extent, image_size + 0.3 * extent)
    xy = xy - center + target
    p = {n: xy[i] for i, n in enumerate(names)}
    depth = {n: v[i, 2] for i, n in enumerate(names)}
    long_sleeves, shorts, bald = rng.random() < 0.5, rng.random() < 0.25, rng.random() < 0.12
    ops = _body_ops(p, depth, yaw, roll, height, build, long_sleeves, shorts, bald)
    keypoints = np.round(np.stack([p[n] for n in KEYPOINT_NAMES]), 2)
    arm = SHIRT if long_sleeves else SKIN
    labels = [SKIN] * 5 + [SHIRT] * 2 + [SHIRT, SHIRT] + [arm, arm] + [TROUSERS] * 4 + [SKIN if shorts else TROUSERS] * 2
    assert len(labels) == NUM_KEYPOINTS
    return Figure(keypoints, ops, tuple(labels), int(rng.integers(2**62)), kind)


def _body_ops(p, depth, yaw, roll, height, build, long_sleeves, shorts, bald) -> list:
    """Painting operations of limbs, torso and head, far parts first."""
    r = {name: (a * height * build, b * height * build) for name, (a, b) in LIMB_RADII.items()}
    fore = SHIRT if long_sleeves else SKIN
    shin = SKIN if shorts else TROUSERS
    parts = []  # (depth, order, ops)
    for side in ("left", "right"):
        def limb(a, b, radii, label, order):
            parts.append(((depth[a] + depth[b]) / 2, order, [("capsule", p[a], p[b], *radii, label)]))
        limb(f"{side}_hip", f"{side}_knee", r["thigh"], TROUSERS, 0)
        limb(f"{side}_knee", f"{side}_ankle", r["shin"], shin, 0)
        limb(f"{side}_heel", f"{side}_toe", r["foot"], SHOES, 0)
        limb(f"{side}_shoulder", f"{side}_elbow", r["upper_arm"], SHIRT, 2)
        limb(f"{side}_elbow", f"{side}_wrist", r["forearm"], fore, 2)
        limb(f"{side}_wrist", f"{side}_hand", r["hand"], SKIN, 2)
    # Torso: convex hull of a box between shoulders and hips, so its width follows the facing.
    hull = cv2.convexHull(np.stack([p[f"torso_{k}"] for k in range(8)]).astype(np.float32))[:, 0]
    parts.append((0.0, 1, [("polygon", hull.astype(np.float64), SHIRT)]))
    # Head: ears, hair ellipse, face ellipse shifted forward/down, eyes and nose on top.
    hw = (HEAD_HALF_WIDTH + 0.008 * abs(np.sin(np.radians(yaw)))) * height
    hh = HEAD_HALF_HEIGHT * height
    angle = roll
    head = [("capsule", p["neck"], p["head"], *r["neck"], SKIN)]
    head += [("disc", p[e], 0.017 * height, SKIN) for e in ("left_ear", "right_ear")]
    head.append(("ellipse", p["head"], (hw, hh), angle, SKIN if bald else HAIR))
    head.append(("ellipse", p["face"], (hw * 0.9, hh * 0.9), angle, SKIN))
    head.append(("disc", p["nose"], 0.012 * height, SKIN))
    head += [("disc", p[e], max(0.5, 0.008 * height), EYES) for e in ("left_eye", "right_eye") if depth[e] - depth["head"] > 0.0]
    parts.append((depth["head"], 3, head))
    parts.sort(key=lambda t: (t[0], t[1]))
    return [op for _, _, ops in parts for op in ops]
