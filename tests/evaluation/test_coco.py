"""pycocotools evaluation: empty and foreign results."""

from __future__ import annotations

import pytest

from deltalearn.evaluation import evaluate_coco


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

