"""Synthetic people data set: articulated figures, vehicles and balls on cluttered backgrounds.

``generate_people`` writes a COCO data set (``annotations.json`` + ``images/``) for
detection, semantic segmentation and 17-keypoint pose. The ground truth comes
from the render itself: every object is painted as part labels into its window,
the same pixels go into the colour image and into an instance-id map, and the
final masks are the id map after all occlusion. Each image draws from its own
random stream ``default_rng([seed, index])``, so the output does not depend on
the number of worker processes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ..config import new_file_mode
from .figures import PartCanvas, ops_bounds, random_color, run_ops, sample_figure, texture
from .keypoints import person_category

# Worker processes start from a fork server, not by forking the caller: a caller that has
# already run OpenCV or torch holds thread pools whose locks a plain fork copies mid-use
# (a generator started after GrabCut in the same process hung that way).
WORKER_CONTEXT = multiprocessing.get_context("forkserver")
T = TypeVar("T")
CATEGORIES = [
    person_category(1),
    {"id": 2, "name": "vehicle", "supercategory": "vehicle"},
    {"id": 3, "name": "ball", "supercategory": "sports"},
]
_CATEGORY_ID = {c["name"]: c["id"] for c in CATEGORIES}
EMPTY_FRACTION = 0.1  # share of images sampled without any object
MIN_VISIBLE_PIXELS = 12  # objects with a smaller visible mask are removed and the image repainted
# COCO labels keypoints on medium and large persons only: small ones (area < 32^2) and crowds
# have num_keypoints 0, and pycocotools' keypoint evaluation has no 'small' area range. That
# area is in the pixels of COCO's images, 640 px on their long side; a generated image of
# another size stands for the same scene at another resolution, so its threshold scales with
# the area: 41 px^2 at 128 px, 655 at 512 (see coco_keypoint_min_area). A person of smaller
# area gets keypoints [0] * 51 (0 labels every person).
COCO_KEYPOINT_MIN_AREA = 32 ** 2
COCO_IMAGE_SIDE = 640


def coco_keypoint_min_area(size: int) -> int:
    """COCO's keypoint labelling threshold (32^2 px in 640 px images) for images of ``size`` px."""
    return round(COCO_KEYPOINT_MIN_AREA * (size / COCO_IMAGE_SIDE) ** 2)


@dataclass(frozen=True)
class Scene:
    """How crowded a generated image is, and how small its persons get.

    ``cluttered`` (the default) is the hard set: up to 8 objects that occlude each other,
    persons from 20 px tall, 3-15 unannotated distractors, some shaped like limbs.
    ``simple`` keeps the same renderer, textures, backgrounds and camera finish, with fewer
    objects (up to 4), persons at least 30 % of the image side tall and 0-3 distractors: a
    set that a network from random weights learns within minutes on a CPU (the demo's).
    """

    max_objects: int = 8  # objects sampled per image: 0 .. max_objects
    min_person_height: float = 0.0  # fraction of the image side; persons are never below 20 px
    distractors: tuple[int, int] = (3, 16)  # unannotated clutter shapes: low (inclusive) .. high (exclusive)


SCENES = {
    "cluttered": Scene(),
    "simple": Scene(max_objects=4, min_person_height=0.3, distractors=(0, 4)),
}


def resolve_scene(scene: str | Scene) -> Scene:
    """A Scene, or the name of one in SCENES (a clear error for an unknown name)."""
    if isinstance(scene, Scene):
        return scene
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}: choose one of {', '.join(SCENES)}")
    return SCENES[scene]
PNG_COMPRESSION = 1  # fixed, so the same seed gives the same bytes


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


def sample_background(rng: np.random.Generator, size: int, scene: Scene = SCENES["cluttered"]) -> np.ndarray:
    """A cluttered [size, size, 3] uint8 RGB background: gradient, colour blobs, pattern, distractors."""
    yy, xx = (np.arange(size, dtype=np.float32)[:, None] / size, np.arange(size, dtype=np.float32)[None] / size)
    a = rng.uniform(0, 2 * np.pi)
    t = (np.cos(a) * xx + np.sin(a) * yy)[..., None]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = random_color(rng) * (1 - t) + random_color(rng) * t  # [size, size, 3] float
    if rng.random() < 0.4:  # a horizon: ground of another colour
        ground = int(rng.uniform(0.3, 0.8) * size)
        image[ground:] = image[ground:] * 0.3 + random_color(rng) * 0.7
    cells = int(rng.integers(2, 9))
    blobs = cv2.resize(rng.standard_normal((cells, cells, 3), dtype=np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    image += blobs * rng.uniform(0, 40)
    if rng.random() < 0.35:
        pattern = texture(rng, size, size, (0, 0, 0), kinds=("stripes", "checker", "noise", "dots"), grain=0.0)
        image += (pattern.astype(np.float32) - pattern.mean()) * rng.uniform(0.05, 0.3)
    image += rng.standard_normal((size, size, 1), dtype=np.float32) * rng.uniform(2, 12)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(*scene.distractors))):
        paint_object(image, None, 0, sample_distractor(rng, size))
    return image


def paint_object(image: np.ndarray, ids: np.ndarray | None, instance: int, obj) -> None:
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


def sample_objects(rng: np.random.Generator, size: int, scene: Scene = SCENES["cluttered"]) -> list:
    """The annotated objects of one image, in painting order (later ones in front)."""
    n = 0 if rng.random() < EMPTY_FRACTION else int(rng.integers(1, scene.max_objects + 1))
    min_height = max(20.0, scene.min_person_height * size)
    samplers = (lambda r, s: sample_figure(r, s, min_height), sample_vehicle, sample_ball)
    kinds = rng.choice(3, size=n, p=(0.6, 0.2, 0.2))
    return [samplers[k](rng, size) for k in kinds]


def render_scene(background: np.ndarray, objects: list) -> tuple[np.ndarray, np.ndarray, list]:
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


def annotate(ids: np.ndarray, objects: list) -> list[dict]:
    """COCO annotations (without ids) from the final instance-id map; keypoint visibility from occlusion."""
    h, w = ids.shape
    annotations = []
    for k, obj in enumerate(objects, 1):
        mask = ids == k
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        ann = {
            "category_id": _CATEGORY_ID[obj.category],
            "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
            "area": int(mask.sum()),
            "bbox": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)],
            "iscrowd": 0,
        }
        if obj.keypoints is not None:
            ann["keypoints"], ann["num_keypoints"] = keypoint_triplets(obj.keypoints, ids, k)
        annotations.append(ann)
    return annotations


def keypoint_triplets(points: np.ndarray, ids: np.ndarray, instance: int) -> tuple[list, int]:
    """Flat [x, y, v] * 17: v = 0 outside the image (x = y = 0), 1 under another instance, 2 on itself."""
    h, w = ids.shape
    flat, labelled = [], 0
    for x, y in points.tolist():
        if not (0 <= x < w and 0 <= y < h):
            flat += [0, 0, 0]
            continue
        v = 2 if ids[int(np.floor(y)), int(np.floor(x))] == instance else 1
        flat += [round(x, 2), round(y, 2), v]
        labelled += 1
    return flat, labelled


def make_image(seed: int, index: int, size: int, scene: str | Scene = "cluttered") -> tuple[np.ndarray, list[dict]]:
    """Image ``index`` of the data set with ``seed``: (RGB image [size, size, 3] uint8, annotations)."""
    scene = resolve_scene(scene)
    rng = np.random.default_rng([seed, index])
    background = sample_background(rng, size, scene)
    image, ids, objects = render_scene(background, sample_objects(rng, size, scene))
    return degrade(rng, image), annotate(ids, objects)


def _write_image(job: tuple[str, int, int, int, Scene]) -> list[dict]:
    """Worker: render one image, write its PNG, return its annotations."""
    images_dir, seed, index, size, scene = job
    image, annotations = make_image(seed, index, size, scene)
    ok, png = cv2.imencode(".png", image[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RuntimeError(f"could not encode image {index}")
    Path(images_dir, f"{index:06d}.png").write_bytes(png.tobytes())
    return annotations


def _init_worker() -> None:
    cv2.setNumThreads(1)


def generate_people(out_dir: str | Path, num_images: int = 200, size: int = 256, seed: int = 0,
                    workers: int | None = None, progress: bool = True,
                    keypoint_min_area: int | None = None, scene: str | Scene = "cluttered") -> dict:
    """Write a synthetic COCO data set of people, vehicles and balls to ``out_dir``.

    Creates ``out_dir/images/000000.png ...`` (image id = index + 1) and ``out_dir/annotations.json``
    (written atomically). ``scene`` is a name in SCENES or a Scene. Persons whose mask area is
    below ``keypoint_min_area`` are annotated without keypoints, as in COCO (None: COCO's
    threshold scaled to ``size``, see coco_keypoint_min_area; 0: every person has them); the
    images do not depend on it.
    Returns stats: images, annotations per category name, persons with keypoints, empty
    images, seconds.
    """
    scene_name = scene if isinstance(scene, str) else "custom"
    scene = resolve_scene(scene)
    if keypoint_min_area is None:
        keypoint_min_area = coco_keypoint_min_area(size)
    if keypoint_min_area < 0:
        raise ValueError(f"keypoint_min_area must be >= 0, got {keypoint_min_area}")
    if num_images < 0:
        raise ValueError(f"num_images must be >= 0, got {num_images}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(str(images_dir), seed, i, size, scene) for i in range(num_images)]
    per_image = run_jobs(_write_image, jobs, workers, progress)
    dataset = _coco_dataset(per_image, size, seed, keypoint_min_area)
    dataset["info"]["scene"] = {"name": scene_name, **asdict(scene)}
    _write_json_atomic(out_dir / "annotations.json", dataset)
    counts = {c["name"]: 0 for c in CATEGORIES}
    names = {c["id"]: c["name"] for c in CATEGORIES}
    for ann in dataset["annotations"]:
        counts[names[ann["category_id"]]] += 1
    return {
        "images": num_images,
        "annotations": counts,
        "persons_with_keypoints": sum(1 for ann in dataset["annotations"] if ann.get("num_keypoints", 0) > 0),
        "empty_images": sum(1 for anns in per_image if not anns),
        "seconds": round(time.perf_counter() - start, 3),
    }


def run_jobs(render: Callable[[tuple], T], jobs: list[tuple], workers: int | None = None, progress: bool = True,
             desc: str = "synth") -> list[T]:
    """``render`` every job, in this process or in ``workers`` processes (default: all cores),
    with a progress bar; results in the order of ``jobs``. Workers use one OpenCV thread each."""
    workers = min(workers or os.cpu_count() or 1, max(len(jobs), 1))
    with tqdm(total=len(jobs), desc=desc, unit="img", disable=not progress) as bar, \
            (WORKER_CONTEXT.Pool(workers, initializer=_init_worker) if workers > 1 else nullcontext()) as pool:
        results = []
        for result in pool.imap(render, jobs, chunksize=4) if workers > 1 else map(render, jobs):
            results.append(result)
            bar.update(1)
    return results


def unlabel_keypoints(ann: dict, min_area: int) -> dict:
    """``ann`` with its keypoints unlabelled ([0] * 51, num_keypoints 0) if it is a person
    whose area is below ``min_area``; other annotations as they are."""
    if "keypoints" not in ann or ann["area"] >= min_area:
        return ann
    return {**ann, "keypoints": [0] * len(ann["keypoints"]), "num_keypoints": 0}


def _coco_dataset(per_image: list[list[dict]], size: int, seed: int, keypoint_min_area: int) -> dict:
    """Assemble the COCO dictionary; ids follow image order, then painting order."""
    images, annotations = [], []
    for index, anns in enumerate(per_image):
        images.append({"id": index + 1, "file_name": f"{index:06d}.png", "width": size, "height": size})
        for ann in anns:
            ann = unlabel_keypoints(ann, keypoint_min_area)
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, **ann})
    info = {"description": "deltalearn synthetic people", "version": "1", "seed": seed,
            "keypoint_min_area": keypoint_min_area}
    return {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": CATEGORIES}


def _write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temporary file in the same folder, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=".annotations.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, new_file_mode())
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
