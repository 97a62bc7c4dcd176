"""Identities across frames: ByteTrack (Zhang et al., ECCV 2022), as Roboflow's ``trackers``
library implements it, over the boxes of each frame; keypoints and masks follow their box.

ByteTrack associates boxes to tracks by IoU with each track's Kalman-filtered box, first the
confident boxes, then the weaker ones; a track lost for ``lost_frames`` frames ends. Persons of
the pose task are boxes of the detection heatmap too, so each takes the identity of the tracked
box it overlaps most (IoU at least ``MIN_MATCH_IOU``).
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

UNTRACKED = -1  # the identity of a box no track holds (yet)
MIN_MATCH_IOU = 0.5  # a pose person takes a tracked box's identity from this overlap on
LOST_FRAMES = 30  # frames (at 30 fps) a track survives without a box


class BoxTracker:
    """One ByteTrack over a stream: :meth:`update` with each frame's boxes gives their identities."""

    def __init__(self, score_threshold: float = 0.3, fps: float = 30.0, lost_frames: int = LOST_FRAMES) -> None:
        # loaded here: trackers brings supervision and its dependencies, which nothing else needs
        from trackers import ByteTrackTracker

        self.bytetrack = ByteTrackTracker(lost_track_buffer=lost_frames, frame_rate=fps,
                                          track_activation_threshold=score_threshold,
                                          high_conf_det_threshold=score_threshold, minimum_consecutive_frames=1)

    def update(self, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Identities [N] (int64, ``UNTRACKED`` for a box no track holds) of xyxy ``boxes`` [N, 4]."""
        import supervision as sv

        detections = sv.Detections(xyxy=np.asarray(boxes, np.float64).reshape(-1, 4),
                                   confidence=np.asarray(scores, np.float64), class_id=np.asarray(labels, int),
                                   data={"index": np.arange(len(boxes))})
        tracked = self.bytetrack.update(detections)
        ids = np.full(len(boxes), UNTRACKED, np.int64)
        if len(tracked):
            ids[tracked.data["index"]] = tracked.tracker_id
        return ids


def match_identities(boxes: np.ndarray, identities: np.ndarray, others: np.ndarray,
                     min_iou: float = MIN_MATCH_IOU) -> np.ndarray:
    """The identity of each box of ``others`` [M, 4]: that of the tracked box of ``boxes``
    [N, 4] it overlaps most, matched greedily from the largest IoU, else ``UNTRACKED``."""
    result = np.full(len(others), UNTRACKED, np.int64)
    if not len(boxes) or not len(others):
        return result
    iou = box_iou(torch.as_tensor(others, dtype=torch.float32), torch.as_tensor(boxes, dtype=torch.float32)).numpy()
    iou[:, np.asarray(identities) == UNTRACKED] = 0.0
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < min_iou:
            break
        if result[i] == UNTRACKED and identities[j] not in result:
            result[i] = identities[j]
    return result
