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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..io import atomic_write_text, encode_png
from ..keypoints import person_category
from .figures import sample_figure
from .jobs import PNG_COMPRESSION, check_settings, run_jobs
from .painter import degrade, paint_object, random_color, render_scene, texture
from .shapes import sample_ball, sample_distractor, sample_vehicle

CATEGORIES = [
    person_category(1),
    {"id": 2, "name": "vehicle", "supercategory": "vehicle"},
    {"id": 3, "name": "ball", "supercategory": "sports"},
]
_CATEGORY_ID = {c["name"]: c["id"] for c in CATEGORIES}
MIN_SIZE = 32  # px: smallest image side
EMPTY_FRACTION = 0.1  # share of images sampled without any object
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
    set small enough for a network from random weights to learn on a CPU (the demo's).
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


def sample_objects(rng: np.random.Generator, size: int, scene: Scene = SCENES["cluttered"]) -> list:
    """The annotated objects of one image, in painting order (later ones in front)."""
    n = 0 if rng.random() < EMPTY_FRACTION else int(rng.integers(1, scene.max_objects + 1))
    min_height = max(20.0, scene.min_person_height * size)
    samplers = (lambda r, s: sample_figure(r, s, min_height), sample_vehicle, sample_ball)
    kinds = rng.choice(3, size=n, p=(0.6, 0.2, 0.2))
    return [samplers[k](rng, size) for k in kinds]


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
    Path(images_dir, f"{index:06d}.png").write_bytes(encode_png(image, PNG_COMPRESSION))
    return annotations


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
    check_settings(num_images, size, seed, workers, MIN_SIZE)
    start = time.perf_counter()
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(str(images_dir), seed, i, size, scene) for i in range(num_images)]
    per_image = run_jobs(_write_image, jobs, workers, progress)
    dataset = _coco_dataset(per_image, size, seed, keypoint_min_area)
    dataset["info"]["scene"] = {"name": scene_name, **asdict(scene)}
    atomic_write_text(out_dir / "annotations.json", json.dumps(dataset, separators=(",", ":")))
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
