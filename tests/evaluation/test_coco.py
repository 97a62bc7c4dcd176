"""pycocotools evaluation: empty and foreign results."""

from __future__ import annotations

import pytest

from deltalearn.evaluation import coco_stats, evaluate_coco, per_image_f1, run_cocoeval


def test_evaluate_coco_empty_and_foreign_results() -> None:
    gt = {"images": [{"id": 1, "height": 10, "width": 10}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}],
          "categories": [{"id": 1, "name": "person"}]}
    assert evaluate_coco(gt, [], "bbox")["ap"] == 0.0
    assert evaluate_coco(gt, [], "keypoints")["ap"] == 0.0  # no keypoint category either
    hit = {"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.9}
    assert evaluate_coco(gt, [hit], "bbox")["ap"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="image ids"):
        evaluate_coco(gt, [{**hit, "image_id": 2}], "bbox")



def test_per_image_f1_follows_cocoeval_matching() -> None:
    gt = {"images": [{"id": 1, "height": 20, "width": 20}, {"id": 2, "height": 20, "width": 20},
                     {"id": 3, "height": 20, "width": 20}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]},
                          {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4]},
                          {"id": 3, "image_id": 2, "category_id": 1, "bbox": [10, 10, 4, 4]}],
          "categories": [{"id": 1, "name": "person"}]}
    results = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.9},  # image 1: found
               {"image_id": 2, "category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.8},  # image 2: one of two,
               {"image_id": 2, "category_id": 1, "bbox": [15, 1, 4, 4], "score": 0.7},  # one false positive
               {"image_id": 2, "category_id": 1, "bbox": [10, 10, 4, 4], "score": 0.1}]  # below min_score
    evaluator = run_cocoeval(gt, results, "bbox")
    assert evaluator.eval["precision"].shape == (10, 101, 1, 4, 3)  # pycocotools' [T, R, K, A, M]
    assert coco_stats(evaluator, "bbox") == evaluate_coco(gt, results, "bbox")
    f1 = per_image_f1(evaluator, [1, 2, 3], min_score=0.3)
    assert f1 == {1: 1.0, 2: pytest.approx(2 * 1 / (2 + 2)), 3: 1.0}  # image 3: nothing to find, nothing found
    assert per_image_f1(evaluator, [2], min_score=0.0)[2] == pytest.approx(2 * 2 / (3 + 2))
    assert per_image_f1(None, [1]) == {1: 1.0}
