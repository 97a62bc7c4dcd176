"""The synthetic people data set: determinism, COCO validity, and ground truth that matches the render."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from deltalearn.data.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from deltalearn.data.synth import COCO_KEYPOINT_MIN_AREA, SCENES, coco_keypoint_min_area, generate_people

SIZE = 128


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict, dict]:
    out = tmp_path_factory.mktemp("synth40")
    # every person labelled, so that the keypoints of all of them are checked against the render
    stats = generate_people(out, num_images=40, size=SIZE, seed=0, workers=2, progress=False, keypoint_min_area=0)
    return out, json.loads((out / "annotations.json").read_text()), stats


@pytest.fixture(scope="module")
def decoded(dataset) -> dict[int, list[tuple[dict, np.ndarray]]]:
    """image id -> [(annotation, mask [H, W] bool)]."""
    _, data, _ = dataset
    by_image = defaultdict(list)
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append((ann, mask_utils.decode(ann["segmentation"]).astype(bool)))
    return by_image


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
    one = generate_people(tmp_path / "a", num_images=12, size=SIZE, seed=5, workers=1, progress=False)
    two = generate_people(tmp_path / "b", num_images=12, size=SIZE, seed=5, workers=2, progress=False)
    a, b = _folder_bytes(tmp_path / "a"), _folder_bytes(tmp_path / "b")
    assert len(a) == 13 and "annotations.json" in a
    assert a == b
    assert one["annotations"] == two["annotations"] and one["empty_images"] == two["empty_images"]


def test_other_seed_other_data(tmp_path):
    generate_people(tmp_path / "a", num_images=4, size=SIZE, seed=1, workers=1, progress=False)
    generate_people(tmp_path / "b", num_images=4, size=SIZE, seed=2, workers=1, progress=False)
    a, b = _folder_bytes(tmp_path / "a"), _folder_bytes(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[name] != b[name] for name in a)


def test_coco_structure_and_stats(dataset):
    out, data, stats = dataset
    coco = COCO(str(out / "annotations.json"))
    assert len(coco.getImgIds()) == 40
    assert [c["name"] for c in data["categories"]] == ["person", "vehicle", "ball"]
    person = coco.loadCats(1)[0]
    assert person["keypoints"] == list(KEYPOINT_NAMES) and len(person["skeleton"]) == 19
    for image in data["images"]:
        assert (out / "images" / image["file_name"]).is_file()
        assert image["width"] == image["height"] == SIZE
    assert stats["images"] == 40
    names = {c["id"]: c["name"] for c in data["categories"]}
    for name, count in stats["annotations"].items():
        assert count == sum(1 for a in data["annotations"] if names[a["category_id"]] == name)
    with_objects = {a["image_id"] for a in data["annotations"]}
    assert stats["empty_images"] == 40 - len(with_objects)
    assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_boxes_and_areas_match_masks(decoded):
    for anns in decoded.values():
        for ann, mask in anns:
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            x0, y0, x1, y1 = cols[0], rows[0], cols[-1], rows[-1]
            assert ann["bbox"] == [x0, y0, x1 - x0 + 1, y1 - y0 + 1]
            assert ann["area"] == mask.sum() >= 12
            assert ann["iscrowd"] == 0


def test_instance_masks_do_not_overlap(decoded):
    for anns in decoded.values():
        total = np.sum([mask for _, mask in anns], axis=0)
        assert total.max() <= 1


def test_keypoint_visibility_follows_occlusion(decoded):
    seen = set()
    for anns in decoded.values():
        for k, (ann, mask) in enumerate(anns):
            if ann["category_id"] != 1:
                assert "keypoints" not in ann
                continue
            kps = np.asarray(ann["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
            others = np.any([m for j, (_, m) in enumerate(anns) if j != k], axis=0) if len(anns) > 1 else np.zeros_like(mask)
            assert ann["num_keypoints"] == int((kps[:, 2] > 0).sum())
            for x, y, v in kps:
                seen.add(int(v))
                if v == 0:
                    assert x == y == 0
                    continue
                assert 0 <= x < SIZE and 0 <= y < SIZE
                pixel = int(np.floor(y)), int(np.floor(x))
                if v == 2:
                    assert mask[pixel], "a visible joint must lie on its own figure"
                else:
                    assert v == 1 and others[pixel] and not mask[pixel], "an occluded joint lies under another instance"
    assert seen == {0, 1, 2}


def test_coco_keypoint_threshold_scales_with_the_image():
    """COCO's 32^2 px is for its 640 px images: the same scene at 128 px has 1/25 of the area."""
    assert COCO_KEYPOINT_MIN_AREA == 1024
    assert coco_keypoint_min_area(640) == 1024
    assert coco_keypoint_min_area(128) == 41 and coco_keypoint_min_area(512) == 655


def test_default_threshold_is_cocos_scaled_to_the_size(dataset, tmp_path):
    _, all_labelled, _ = dataset
    generate_people(tmp_path, num_images=40, size=SIZE, seed=0, workers=2, progress=False)
    coco = json.loads((tmp_path / "annotations.json").read_text())
    assert coco["info"]["keypoint_min_area"] == 41
    for before, after in zip(all_labelled["annotations"], coco["annotations"], strict=True):
        if before["category_id"] == 1:
            assert (after["num_keypoints"] == 0) == (before["area"] < 41 or before["num_keypoints"] == 0)


def test_small_persons_have_no_keypoints_as_in_coco(dataset, tmp_path):
    """Persons below the threshold (here COCO's 32^2 px itself) are unlabelled (num_keypoints 0,
    all zeros), larger ones keep theirs; the images are the same bytes either way."""
    all_labelled_dir, all_labelled, stats = dataset
    stats_coco = generate_people(tmp_path, num_images=40, size=SIZE, seed=0, workers=2, progress=False,
                                 keypoint_min_area=1024)
    coco = json.loads((tmp_path / "annotations.json").read_text())
    assert coco["info"]["keypoint_min_area"] == 1024
    assert all_labelled["info"]["keypoint_min_area"] == 0
    small = large = 0
    for before, after in zip(all_labelled["annotations"], coco["annotations"], strict=True):
        assert {k: v for k, v in before.items() if "keypoints" not in k} == \
            {k: v for k, v in after.items() if "keypoints" not in k}
        if before["category_id"] != 1:
            continue
        if before["area"] < 1024:
            small += before["num_keypoints"] > 0
            assert after["num_keypoints"] == 0 and after["keypoints"] == [0] * 3 * NUM_KEYPOINTS
        else:
            large += 1
            assert after["keypoints"] == before["keypoints"] and after["num_keypoints"] == before["num_keypoints"]
    assert small > 0 and large > 0  # both kinds occur in 40 images
    assert stats_coco["persons_with_keypoints"] < stats["persons_with_keypoints"]
    assert _folder_bytes(tmp_path / "images") == _folder_bytes(all_labelled_dir / "images")
    with pytest.raises(ValueError, match="keypoint_min_area"):
        generate_people(tmp_path / "bad", num_images=1, keypoint_min_area=-1, progress=False)


def test_variety_across_images(dataset, decoded):
    _, data, _ = dataset
    counts = [len(decoded.get(image["id"], [])) for image in data["images"]]
    assert min(counts) == 0 and max(counts) >= 6
    assert {a["category_id"] for a in data["annotations"]} == {1, 2, 3}
    touching = [a for a in data["annotations"] if a["bbox"][0] == 0 or a["bbox"][0] + a["bbox"][2] == SIZE]
    assert touching, "some objects must be cut by the image border"
    heights = [a["bbox"][3] for a in data["annotations"] if a["category_id"] == 1]
    assert min(heights) < 30 and max(heights) > SIZE / 2


def test_simple_scenes_have_fewer_objects_and_larger_persons(dataset, tmp_path):
    """The simple scene: at most 4 objects, no person drawn below 30 % of the side, fewer
    distractors; the cluttered default is named in info with its settings."""
    _, cluttered, _ = dataset
    generate_people(tmp_path, num_images=40, size=SIZE, seed=0, workers=1, progress=False, scene="simple")
    simple = json.loads((tmp_path / "annotations.json").read_text())
    assert simple["info"]["scene"]["name"] == "simple" and simple["info"]["scene"]["max_objects"] == 4
    assert cluttered["info"]["scene"] == {"name": "cluttered", "max_objects": 8, "min_person_height": 0.0,
                                          "distractors": [3, 16]}
    per_image = defaultdict(int)
    for ann in simple["annotations"]:
        per_image[ann["image_id"]] += 1
    assert max(per_image.values()) <= SCENES["simple"].max_objects
    assert len(simple["annotations"]) < len(cluttered["annotations"])

    def median_height(data):
        return np.median([a["bbox"][3] for a in data["annotations"] if a["category_id"] == 1])

    assert median_height(simple) > 1.1 * median_height(cluttered)
    # a person's skeleton is scaled to at least 0.3 * SIZE; a visible part may still be shorter
    # (cut by the border, lying, occluded), so the check is on the keypoints' spread over the
    # persons fully inside the image with every joint labelled and visible
    spreads = [np.ptp(np.reshape(a["keypoints"], (-1, 3))[:, :2], axis=0).max()
               for a in simple["annotations"] if a["category_id"] == 1 and a["num_keypoints"] == 17]
    assert spreads and min(spreads) > 0.2 * SIZE
    with pytest.raises(ValueError, match="unknown scene 'busy'"):
        generate_people(tmp_path / "bad", num_images=1, scene="busy", progress=False)


@pytest.mark.parametrize("kwargs", [{"num_images": -1}, {"size": 31}, {"workers": 0}, {"seed": -1}])
def test_bad_arguments_raise(tmp_path, kwargs):
    with pytest.raises(ValueError, match="must be"):
        generate_people(tmp_path, **{"num_images": 1, "progress": False, **kwargs})
    assert not (tmp_path / "annotations.json").exists()


def test_zero_images_gives_empty_dataset(tmp_path):
    stats = generate_people(tmp_path, num_images=0, size=64, progress=False)
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert data["images"] == [] and data["annotations"] == [] and stats["images"] == 0
