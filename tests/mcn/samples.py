"""Small hand-made samples of 128 px for the task tests."""

from __future__ import annotations

import torch

from deltalearn.data.keypoints import NUM_KEYPOINTS
from deltalearn.data.sample import Sample

STRIDE = 4

SIZE = 128

CONFIDENT = 30.0  # a logit that is certain


def make_sample(boxes: list[list[float]], labels: list[int], crowd_box: tuple[int, int, int, int] | None = None,
                keypoints: torch.Tensor | None = None) -> Sample:
    """A 128 px sample with rectangle masks; ``keypoints`` [N, 17, 3] or none."""
    n = len(boxes)
    masks = torch.zeros((n, SIZE, SIZE), dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, int(y1):int(y2), int(x1):int(x2)] = True
    crowd = torch.zeros((SIZE, SIZE), dtype=torch.bool)
    if crowd_box is not None:
        x1, y1, x2, y2 = crowd_box
        crowd[y1:y2, x1:x2] = True
    return Sample(image=torch.zeros((3, SIZE, SIZE), dtype=torch.uint8),
                  boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  labels=torch.tensor(labels, dtype=torch.int64), masks=masks,
                  keypoints=keypoints if keypoints is not None else torch.zeros((n, NUM_KEYPOINTS, 3)),
                  crowd=crowd, image_id=7, orig_size=(SIZE, SIZE))


DET_BOXES = [[10.0, 12.0, 50.0, 40.0], [70.5, 60.2, 90.1, 110.7], [20.0, 80.0, 28.0, 96.0]]

