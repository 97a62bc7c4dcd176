"""The COCO dataset on a tiny hand-written folder: masks, crowd, keypoints, subsets, bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from deltalearn.data.coco import CocoDataset, collate_samples
from deltalearn.data.errors import AnnotationError, DataError, DataWarning, ImageDecodeError
from deltalearn.data.keypoints import KEYPOINT_NAMES, SKELETON
from deltalearn.data.sample import IGNORE_INDEX
from deltalearn.data.transforms import RandomHorizontalFlip, train_transforms

A, B, C, D = 0, 1, 2, 3  # sample indices of a.png .. d.png
PERSON, CAR, DOG = 0, 1, 2  # contiguous labels of COCO ids 1, 5, 9


def _edit(root: Path, change) -> None:
    """Apply ``change(coco_dict)`` to the folder's annotations.json."""
    path = root / "annotations.json"
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))


def _ann(coco: dict, ann_id: int) -> dict:
    return next(a for a in coco["annotations"] if a["id"] == ann_id)


def test_categories_map_to_contiguous_labels_in_id_order(tiny_coco):
    dataset = CocoDataset.from_dir(tiny_coco)
    assert len(dataset) == 4
    assert dataset.category_ids == [1, 5, 9]
    assert dataset.category_names == ["person", "car", "dog"]
    assert dataset.keypoint_names == KEYPOINT_NAMES and dataset.has_keypoints
    assert dataset.skeleton == SKELETON
    assert dataset.coco["info"]["description"] == "deltalearn tiny test set"


def test_sample_tensors_have_the_documented_types(tiny_coco, tiny_coco_truth):
    sample = CocoDataset.from_dir(tiny_coco)[B]
    n = 3
    assert sample.image.shape == (3, 40, 48) and sample.image.dtype == torch.uint8
    assert sample.boxes.shape == (n, 4) and sample.boxes.dtype == torch.float32
    assert sample.labels.dtype == torch.int64
    assert sample.masks.shape == (n, 40, 48) and sample.masks.dtype == torch.bool
    assert sample.keypoints.shape == (n, 17, 3) and sample.keypoints.dtype == torch.float32
    assert sample.crowd.shape == (40, 48) and sample.crowd.dtype == torch.bool
    expected = torch.from_numpy(tiny_coco_truth["pixels"](20)).permute(2, 0, 1)
    assert torch.equal(sample.image, expected)
    assert (sample.image_id, sample.file_name, sample.orig_size) == (20, "b.png", (40, 48))
    assert sample.scale == 1.0 and sample.offset == (0.0, 0.0)
    assert sample.ann_ids == [201, 202, 203]


def test_two_part_polygon_rle_and_crowd(tiny_coco, tiny_coco_truth):
    sample = CocoDataset.from_dir(tiny_coco)[A]
    assert sample.ann_ids == [101, 102]  # the crowd annotation 103 is no instance
    assert sample.labels.tolist() == [PERSON, CAR]
    two_parts = torch.from_numpy(tiny_coco_truth["two_part_mask"])
    assert torch.equal(sample.masks[0], two_parts)
    assert sample.masks[0, 5, 5] and sample.masks[0, 25, 35]  # a pixel of each part
    assert int(sample.masks[0].sum()) == 64 + 100
    assert torch.equal(sample.masks[1], torch.from_numpy(tiny_coco_truth["rle_mask"]))
    crowd = torch.from_numpy(tiny_coco_truth["crowd_mask"])
    assert torch.equal(sample.crowd, crowd) and int(crowd.sum()) == 120
    assert not (sample.masks & sample.crowd).any()
    assert sample.boxes.tolist() == [[2.0, 2.0, 40.0, 30.0], [4.0, 22.0, 20.0, 36.0]]


def test_semantic_mask_ignores_crowd(tiny_coco, tiny_coco_truth):
    semantic = CocoDataset.from_dir(tiny_coco)[A].semantic_mask()
    assert (semantic[torch.from_numpy(tiny_coco_truth["crowd_mask"])] == IGNORE_INDEX).all()
    assert (semantic[torch.from_numpy(tiny_coco_truth["rle_mask"])] == CAR + 1).all()
    assert (semantic[torch.from_numpy(tiny_coco_truth["two_part_mask"])] == PERSON + 1).all()
    assert int((semantic == 0).sum()) == 40 * 48 - 120 - 164 - int(tiny_coco_truth["rle_mask"].sum())


def test_uncompressed_and_compressed_rle_give_the_same_mask(tiny_coco, tiny_coco_truth):
    dataset = CocoDataset.from_dir(tiny_coco)
    car = dataset[A].masks[1]  # compressed
    dog = dataset[B].masks[2]  # uncompressed
    assert dataset[B].labels[2] == DOG
    assert torch.equal(car, dog)
    assert int(dog.sum()) == 8 * 14 + 8 * 6


def test_keypoints_and_person_without_keypoints(tiny_coco, tiny_coco_truth):
    sample = CocoDataset.from_dir(tiny_coco)[B]
    assert torch.equal(sample.keypoints[0], torch.from_numpy(tiny_coco_truth["keypoints"]))
    assert sample.keypoints[0, :, 2].tolist().count(0) == 14
    # num_keypoints 0: a normal instance with all-zero keypoints
    assert sample.labels.tolist() == [PERSON, PERSON, DOG]
    assert (sample.keypoints[1] == 0).all() and sample.masks[1].sum() == 200
    assert (sample.keypoints[2] == 0).all()  # dog: no keypoints


def test_image_without_annotations_and_box_as_mask(tiny_coco, tiny_coco_truth):
    dataset = CocoDataset.from_dir(tiny_coco)
    empty = dataset[C]
    assert empty.boxes.shape == (0, 4) and empty.masks.shape == (0, 40, 48)
    assert empty.keypoints.shape == (0, 17, 3) and not empty.crowd.any()
    assert empty.ann_ids == []
    boxed = dataset[D]
    assert torch.equal(boxed.masks[0], torch.from_numpy(tiny_coco_truth["box_mask"]))
    assert boxed.boxes.tolist() == [[8.0, 8.0, 24.0, 20.0]]


def test_category_subset_by_name_and_id(tiny_coco):
    persons = CocoDataset.from_dir(tiny_coco, categories=["person"])
    assert persons.category_ids == [1] and persons.category_names == ["person"]
    a, b = persons[A], persons[B]
    assert a.ann_ids == [101] and b.ann_ids == [201, 202]
    assert a.labels.tolist() == [0] and b.labels.tolist() == [0, 0]
    assert a.crowd.any()  # the person crowd stays ignored
    assert len(persons[D].labels) == 0
    animals = CocoDataset.from_dir(tiny_coco, categories=[9, "car"])
    assert animals.category_ids == [5, 9] and animals.keypoint_names == ()
    assert animals[B].labels.tolist() == [1] and animals[B].keypoints.shape == (1, 17, 3)
    assert not animals[A].crowd.any()  # a person crowd is no region of a car/dog dataset


def test_unknown_category_lists_the_valid_ones(tiny_coco):
    with pytest.raises(DataError) as error:
        CocoDataset.from_dir(tiny_coco, categories=["cat"])
    assert "'cat'" in str(error.value) and "person (1), car (5), dog (9)" in str(error.value)


def test_ann_and_images_layout_equals_data_dir(tiny_coco):
    direct = CocoDataset(tiny_coco / "annotations.json", tiny_coco / "images")
    assert torch.equal(direct[A].masks, CocoDataset.from_dir(tiny_coco)[A].masks)


def test_transforms_are_applied_last(tiny_coco):
    seen = []

    def record(sample):
        seen.append(sample.ann_ids)
        sample.scale = 0.5
        return sample

    sample = CocoDataset.from_dir(tiny_coco, transforms=record)[A]
    assert seen == [[101, 102]] and sample.scale == 0.5


def test_samples_carry_the_tasks_their_source_labels(tiny_coco):
    assert CocoDataset.from_dir(tiny_coco)[A].tasks is None  # one source: labelled for every task
    dataset = CocoDataset.from_dir(tiny_coco, tasks=["seg"], transforms=train_transforms(64))
    sample = dataset[A]
    assert sample.tasks == ("seg",) and sample.labelled_for("seg") and not sample.labelled_for("det")


def test_cached_samples_are_loaded_once_and_not_changed_by_transforms(tiny_coco, monkeypatch):
    """With ``cache_samples`` a sample is decoded once; later calls give the same untransformed
    content whatever the transforms did to their copy (here: a flip and a changed attribute)."""
    dataset = CocoDataset.from_dir(tiny_coco)
    reference = dataset.load(A)
    dataset.cache_samples = True

    def mutate(sample):
        sample.scale = 0.5
        return RandomHorizontalFlip(1.0)(sample)

    dataset.transforms = mutate
    loads = []
    original_load = dataset.load
    monkeypatch.setattr(dataset, "load", lambda index: loads.append(index) or original_load(index))
    first, second = dataset[A], dataset[A]
    assert loads == [A]
    assert torch.equal(first.image, second.image) and torch.equal(first.image, reference.image.flip(-1))
    cached = dataset._cache[A]
    assert cached.scale == reference.scale != 0.5
    assert torch.equal(cached.image, reference.image) and torch.equal(cached.masks, reference.masks)
    assert torch.equal(cached.keypoints, reference.keypoints)


def test_summary_counts(tiny_coco):
    summary = CocoDataset.from_dir(tiny_coco).summary()
    assert summary == {
        "images": 4,
        "annotations_per_category": {"person": 3, "car": 1, "dog": 2},
        "labelled_keypoints": 3,
        "crowd_regions": 1,
        "images_without_annotations": 1,
    }


def test_degenerate_box_is_dropped_and_counted(tiny_coco):
    def change(coco):
        _ann(coco, 202)["bbox"] = [25.0, 5.0, 0.0, 20.0]
        _ann(coco, 203)["bbox"] = [4.0, 22.0, 44.5, 14.0]  # 0.5 px past the edge: tolerated

    _edit(tiny_coco, change)
    dataset = CocoDataset.from_dir(tiny_coco, strict=True)
    with pytest.warns(DataWarning, match="b.png: dropped 1"):
        sample = dataset[B]
    assert sample.ann_ids == [201, 203] and dataset.dropped_boxes == 1
    assert sample.boxes[1].tolist() == [4.0, 22.0, 48.0, 36.0]  # clipped to the image
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset[B]  # warned once per sample, counted once
    assert dataset.dropped_boxes == 1


def _remove(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


# (name, change to the folder, error type, words the message must hold)
BAD_SAMPLES = [
    ("missing image", lambda root: _remove(root / "images" / "b.png"),
     ImageDecodeError, ["b.png", "not found"]),
    ("corrupt image", lambda root: _truncate(root / "images" / "b.png"),
     ImageDecodeError, ["b.png", "truncated"]),
    ("box outside image", lambda root: _edit(root, lambda c: _ann(c, 201).update(bbox=[40, 10, 20, 10])),
     AnnotationError, ["annotations.json", "annotation 201", "[40.0, 10.0, 20.0, 10.0]", "extends past", "48x40"]),
    ("negative box", lambda root: _edit(root, lambda c: _ann(c, 202).update(bbox=[5, 5, -3, 4])),
     AnnotationError, ["annotations.json", "annotation 202", "negative width"]),
    ("keypoints of wrong length", lambda root: _edit(root, lambda c: _ann(c, 201).update(keypoints=[1] * 50)),
     AnnotationError, ["annotations.json", "annotation 201", "51", "found 50"]),
    ("unknown category", lambda root: _edit(root, lambda c: _ann(c, 203).update(category_id=7)),
     AnnotationError, ["annotations.json", "annotation 203", "unknown category id 7"]),
    ("RLE of another size", lambda root: _edit(root, lambda c: _ann(c, 203)["segmentation"].update(size=[40, 40])),
     AnnotationError, ["annotations.json", "annotation 203", "[40, 40]", "[40, 48]"]),
    ("size mismatch", lambda root: _edit(root, lambda c: c["images"][B].update(width=50)),
     AnnotationError, ["b.png", "annotations.json", "48x40", "50x40"]),
]


@pytest.mark.parametrize("change, kind, words", [case[1:] for case in BAD_SAMPLES],
                         ids=[case[0] for case in BAD_SAMPLES])
def test_bad_sample_raises_when_strict(tiny_coco, change, kind, words):
    change(tiny_coco)
    dataset = CocoDataset.from_dir(tiny_coco, strict=True)
    with pytest.raises(kind) as error:
        dataset[B]
    text = str(error.value)
    assert "\n" not in text
    for word in words:
        assert word in text
    assert dataset[A] is not None  # only the bad sample fails


@pytest.mark.parametrize("change, kind, words", [case[1:] for case in BAD_SAMPLES],
                         ids=[case[0] for case in BAD_SAMPLES])
def test_bad_sample_is_skipped_once_when_not_strict(tiny_coco, change, kind, words):
    change(tiny_coco)
    dataset = CocoDataset.from_dir(tiny_coco)
    with pytest.warns(DataWarning, match="skipping sample") as record:
        assert dataset[B] is None
        assert dataset[B] is None  # warned and counted once
    assert len([w for w in record if issubclass(w.category, DataWarning)]) == 1
    assert len(dataset.skipped) == 1 and dataset.skipped[0][0] == "b.png"
    assert all(word in dataset.skipped[0][1] for word in words)
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    assert [s.file_name for s in batch] == ["a.png", "c.png", "d.png"]
    report = dataset.validate(progress=False)
    assert report["skipped"] == dataset.skipped and report["images"] == 4


def test_annotation_of_no_image(tiny_coco):
    _edit(tiny_coco, lambda c: _ann(c, 401).update(image_id=99))
    with pytest.raises(AnnotationError, match=r"annotations.json: annotation 401: image_id 99 matches no image"):
        CocoDataset.from_dir(tiny_coco, strict=True)
    with pytest.warns(DataWarning, match="1 annotation"):
        dataset = CocoDataset.from_dir(tiny_coco)
    assert len(dataset.skipped) == 1 and "annotation 401" in dataset.skipped[0][1]
    assert len(dataset[D].labels) == 0 and all(dataset[i] is not None for i in range(4))


def test_malformed_json_raises_with_line_and_column(tiny_coco):
    path = tiny_coco / "annotations.json"
    path.write_text('{\n "images": [],\n "annotations": [,]\n}')
    for strict in (True, False):
        with pytest.raises(DataError, match=r"annotations.json: malformed JSON at line 3, column 18"):
            CocoDataset.from_dir(tiny_coco, strict=strict)


def test_missing_annotation_file_or_folder(tiny_coco, tmp_path):
    (tiny_coco / "annotations.json").unlink()
    with pytest.raises(DataError, match="annotations.json: annotation file not found"):
        CocoDataset.from_dir(tiny_coco)
    with pytest.raises(DataError, match="annotation file not found"):
        CocoDataset(tmp_path / "instances_val2017.json", tiny_coco / "images")
    with pytest.raises(DataError, match="data folder not found"):
        CocoDataset.from_dir(tmp_path / "absent")


@pytest.mark.parametrize("change, words", [
    (lambda c: c.pop("categories"), ["missing top-level key 'categories'"]),
    (lambda c: c.update(images={}), ["'images' must be an array, found an object"]),
    (lambda c: c["images"][1].pop("file_name"), ["images[1]: missing 'file_name'"]),
    (lambda c: c["images"][0].update(height="40"), ["images[0]: 'height' must be a number, found a string"]),
    (lambda c: c["categories"][1]["keypoints"].reverse(),
     ["category 'person' has keypoint 0 'right_ankle' where COCO has 'nose'"]),
])
def test_malformed_structure_is_a_clear_error(tiny_coco, change, words):
    _edit(tiny_coco, change)
    with pytest.raises(DataError) as error:
        CocoDataset.from_dir(tiny_coco)
    assert str(error.value).startswith(str(tiny_coco / "annotations.json") + ": ")
    for word in words:
        assert word in str(error.value)
