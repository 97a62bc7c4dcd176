"""The COCO person keypoint definition: names, order, skeleton, flip pairs, OKS sigmas."""

from __future__ import annotations

NUM_KEYPOINTS = 17

# Order and names exactly as in COCO's person_keypoints_*.json category entry.
KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

# Limbs as 1-based keypoint index pairs, as COCO stores them in the category entry.
SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7),
    (6, 8), (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5),
    (4, 6), (5, 7),
)

# Per-keypoint standard deviations of COCO's object keypoint similarity (pycocotools' COCOeval).
OKS_SIGMAS: tuple[float, ...] = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)


def flip_pairs(names: tuple[str, ...] | list[str] = KEYPOINT_NAMES) -> list[tuple[int, int]]:
    """0-based index pairs (left, right) found by name, e.g. (1, 2) for the eyes."""
    index = {name: i for i, name in enumerate(names)}
    pairs = []
    for name, i in index.items():
        if name.startswith("left_"):
            j = index.get("right_" + name[len("left_"):])
            if j is not None:
                pairs.append((i, j))
    return pairs


def flip_permutation(names: tuple[str, ...] | list[str] = KEYPOINT_NAMES) -> list[int]:
    """Index map such that ``flipped[k] = original[perm[k]]`` after a horizontal mirror."""
    perm = list(range(len(names)))
    for i, j in flip_pairs(names):
        perm[i], perm[j] = j, i
    return perm


def person_category(category_id: int = 1, name: str = "person") -> dict:
    """A COCO category entry with keypoint names and skeleton, as in person_keypoints_*.json."""
    return {
        "id": category_id,
        "name": name,
        "supercategory": "person",
        "keypoints": list(KEYPOINT_NAMES),
        "skeleton": [list(limb) for limb in SKELETON],
    }
