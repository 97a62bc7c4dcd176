"""ByteTrack identities: stable for persons that do not cross, through jitter and missed boxes;
keypoints take the identity of the box they overlap."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deltalearn.data.synth.video import generate_people_video
from deltalearn.mcn.tracking import UNTRACKED, BoxTracker, match_identities


def test_identities_stay_stable_on_the_generated_video(tmp_path: Path) -> None:
    """The ground-truth boxes of a generated video, jittered, shuffled, sometimes missing and
    with a spurious box: each person keeps one identity from its second frame on."""
    tracks = generate_people_video(tmp_path, frames=40, size=128, persons=3, seed=3)
    rng = np.random.default_rng(0)
    tracker = BoxTracker(score_threshold=0.3, fps=tracks["fps"])
    seen: dict[int, set[int]] = {1: set(), 2: set(), 3: set()}
    for frame in tracks["frames"]:
        persons = [p for p in frame["persons"] if not (frame["frame"] % 9 == 5 and p["track_id"] == 2)]  # missed
        order = rng.permutation(len(persons))
        boxes = np.array([persons[i]["bbox"] for i in order], float) + rng.normal(0, 0.7, (len(persons), 4))
        truth = [persons[i]["track_id"] for i in order]
        scores = rng.uniform(0.5, 0.9, len(persons))
        if frame["frame"] == 20:  # a one-frame false positive far from everyone
            boxes = np.vstack([boxes, [2, 2, 12, 12]])
            scores = np.append(scores, 0.35)
        ids = tracker.update(boxes, scores, np.zeros(len(boxes), int))
        assert len(ids) == len(boxes)
        for identity, person in zip(ids, truth):
            if frame["frame"] > 0:
                assert identity != UNTRACKED
                seen[person].add(int(identity))
    assert all(len(ids) == 1 for ids in seen.values()), seen  # one identity per person
    assert len(set.union(*seen.values())) == 3  # and three different ones


def test_persons_take_the_identity_of_the_box_they_overlap() -> None:
    boxes = np.array([[0, 0, 10, 20], [50, 0, 60, 20], [100, 0, 110, 20]], float)
    ids = np.array([7, UNTRACKED, 3])
    persons = np.array([[99, 1, 110, 21], [1, 0, 10, 19], [50, 0, 60, 20], [200, 0, 210, 20]], float)
    assert match_identities(boxes, ids, persons).tolist() == [3, 7, UNTRACKED, UNTRACKED]
    assert match_identities(boxes[:0], ids[:0], persons).tolist() == [UNTRACKED] * 4
