"""The typed sample that every dataset yields and every transform keeps consistent."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .keypoints import NUM_KEYPOINTS

IGNORE_INDEX = 255  # semantic-mask value of crowd (ignored) pixels


@dataclass
class Sample:
    """One image and its ground truth, in the pixel coordinates of ``image``.

    Shapes: image [3, H, W] uint8 RGB; boxes [N, 4] float32 xyxy; labels [N] int64
    (contiguous class index 0..C-1); masks [N, H, W] bool; keypoints [N, 17, 3] float32
    (x, y, COCO visibility 0/1/2; all zero for classes without keypoints);
    crowd [H, W] bool, regions marked ``iscrowd`` that count neither as objects nor as
    background. ``tasks`` names the tasks it is labelled for (None: all).
    """

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    keypoints: torch.Tensor
    crowd: torch.Tensor
    image_id: int = 0
    file_name: str = ""
    # Affine map back to the original image: x_orig = (x - offset[0]) / scale, same for y.
    orig_size: tuple[int, int] = (0, 0)  # (H, W) of the decoded original image
    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)
    ann_ids: list[int] = field(default_factory=list)
    # Names of the tasks whose labels this sample carries (its source's); None: every task. A
    # task a sample is not labelled for learns nothing from it: a missing label is no negative.
    tasks: tuple[str, ...] | None = None

    def labelled_for(self, task: str) -> bool:
        """Whether the sample carries the labels of ``task``."""
        return self.tasks is None or task in self.tasks

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the image as it is now."""
        return int(self.image.shape[-2]), int(self.image.shape[-1])

    def semantic_mask(self) -> torch.Tensor:
        """[H, W] int64: 0 background, label + 1 per object class, IGNORE_INDEX on crowd.

        Larger instances are painted first so that a smaller object in front stays visible.
        """
        h, w = self.size
        semantic = torch.zeros((h, w), dtype=torch.int64)
        if len(self.labels):
            areas = self.masks.flatten(1).sum(1)
            for i in torch.argsort(areas, descending=True).tolist():
                semantic[self.masks[i]] = int(self.labels[i]) + 1
        semantic[self.crowd] = IGNORE_INDEX
        return semantic

    def to_original(self, xy: torch.Tensor) -> torch.Tensor:
        """Map [..., 2] pixel coordinates of this sample back to the original image."""
        offset = torch.tensor(self.offset, dtype=xy.dtype, device=xy.device)
        return (xy - offset) / self.scale


def empty_targets(height: int, width: int) -> dict[str, torch.Tensor]:
    """Tensors of a sample with no objects."""
    return {
        "boxes": torch.zeros((0, 4), dtype=torch.float32),
        "labels": torch.zeros((0,), dtype=torch.int64),
        "masks": torch.zeros((0, height, width), dtype=torch.bool),
        "keypoints": torch.zeros((0, NUM_KEYPOINTS, 3), dtype=torch.float32),
        "crowd": torch.zeros((height, width), dtype=torch.bool),
    }
