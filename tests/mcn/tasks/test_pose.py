"""The pose task: targets, loss, region regression, keypoint snapping, its need of detection."""

from __future__ import annotations

import pytest
import torch

from deltalearn.data.keypoints import NUM_KEYPOINTS
from deltalearn.data.sample import Sample
from deltalearn.mcn.tasks import DetectionTask, PoseTask
from deltalearn.mcn.tasks.pose import decode_poses

from ..samples import CONFIDENT, STRIDE, make_sample


def person_keypoints(box: list[float]) -> torch.Tensor:
    """[17, 3] keypoints spread over ``box`` (all labelled)."""
    x1, y1, x2, y2 = box
    t = torch.linspace(0.1, 0.9, NUM_KEYPOINTS)
    xs = x1 + (x2 - x1) * (0.3 + 0.4 * (torch.arange(NUM_KEYPOINTS) % 2))
    ys = y1 + (y2 - y1) * t
    return torch.stack([xs, ys, torch.full_like(xs, 2.0)], dim=1)


POSE_BOXES = [[16.0, 8.0, 56.0, 88.0], [72.0, 30.0, 104.0, 110.0]]


def pose_setup(pose_offsets: str = "per_joint", regression: str = "center") -> tuple[PoseTask, dict, dict, Sample]:
    det = DetectionTask(num_classes=2, in_channels=8, box_regression=regression)
    pose = PoseTask(in_channels=8, person_label=1, pose_offsets=pose_offsets, regression=regression)
    keypoints = torch.stack([person_keypoints(b) for b in POSE_BOXES])
    keypoints[1, 3] = 0.0  # one unlabelled joint
    sample = make_sample(POSE_BOXES, [1, 1], keypoints=keypoints)
    targets = {**det.encode([sample], STRIDE), **pose.encode([sample], STRIDE)}
    outputs = {**det.oracle_outputs(targets, STRIDE), **pose.oracle_outputs(targets, STRIDE)}
    return pose, outputs, targets, sample


def test_pose_targets() -> None:
    pose, _, targets, sample = pose_setup()
    assert targets["pose.joint_mask"][0, :2].sum() == 2 * NUM_KEYPOINTS - 1
    assert targets["pose.joint_mask"][0, 1, 3] == 0
    cell = torch.tensor([targets["pose.index"][0, 0] % 32, targets["pose.index"][0, 0] // 32])
    joints = sample.keypoints[0, :, :2] / STRIDE
    assert torch.allclose(targets["pose.displacement"][0, 0], joints - cell)
    x, y = joints[5].floor().long().tolist()
    assert targets["pose.heatmap"][0, 5, y, x] == 1.0


def test_pose_targets_equal_a_joint_by_joint_encoding() -> None:
    """The encoder writes each person's joints at once; every target equals the plain loop's."""
    from deltalearn.mcn.heatmaps import box_centers, draw_gaussian, integer_radius

    pose = PoseTask(in_channels=8, person_label=1)
    keypoints = torch.stack([person_keypoints(b) for b in POSE_BOXES])
    keypoints[1, 3] = 0.0  # unlabelled
    keypoints[0, 4, :2] = torch.tensor([200.0, 20.0])  # labelled, but off the grid
    sample = make_sample(POSE_BOXES, [1, 1], keypoints=keypoints)
    found = pose.encode_sample(sample, STRIDE)
    h, w = sample.size[0] // STRIDE, sample.size[1] // STRIDE
    heatmap = torch.zeros((NUM_KEYPOINTS, h, w))
    displacement = torch.zeros((pose.max_objects, NUM_KEYPOINTS, 2))
    joint_mask = torch.zeros((pose.max_objects, NUM_KEYPOINTS))
    joint_index = torch.zeros((pose.max_objects, NUM_KEYPOINTS), dtype=torch.int64)
    offset = torch.zeros((pose.max_objects, NUM_KEYPOINTS, 2))
    centers = box_centers(sample.boxes, STRIDE, (h, w))
    for slot in range(len(POSE_BOXES)):
        radius = integer_radius(float(centers["size"][slot, 1]), float(centers["size"][slot, 0]))
        for j in range(NUM_KEYPOINTS):
            x, y, v = sample.keypoints[slot, j].tolist()
            gx, gy = x / STRIDE, y / STRIDE
            cx, cy = int(gx // 1), int(gy // 1)
            if v <= 0 or not (0 <= cx < w and 0 <= cy < h):
                continue
            draw_gaussian(heatmap[j], (cx, cy), radius)
            displacement[slot, j] = torch.tensor([gx, gy]) - centers["cell"][slot]
            joint_mask[slot, j] = 1.0
            joint_index[slot, j] = cy * w + cx
            offset[slot, j] = torch.tensor([gx - cx, gy - cy])
    assert joint_mask[0, 4] == 0 and joint_mask[1, 3] == 0
    for key, expected in (("heatmap", heatmap), ("displacement", displacement), ("joint_mask", joint_mask),
                          ("joint_index", joint_index), ("offset", offset)):
        assert torch.equal(found[f"pose.{key}"], expected), key


@pytest.mark.parametrize(("pose_offsets", "regression"), [("per_joint", "center"), ("shared", "center"),
                                                         ("per_joint", "region")])
def test_pose_loss_zero_for_perfect_outputs_and_grows(pose_offsets: str, regression: str) -> None:
    pose, outputs, targets, _ = pose_setup(pose_offsets, regression)
    outputs["pose.heatmap"] = torch.where(targets["pose.heatmap"].eq(1), CONFIDENT, -CONFIDENT)
    assert outputs["pose.offset"].shape[1] == (34 if pose_offsets == "per_joint" else 2)
    perfect = pose.loss(outputs, targets)
    errors = {"pose.heatmap": -CONFIDENT, "pose.displacement": 0.5, "pose.offset": 0.5}
    worse = pose.loss({k: v + errors.get(k, 0.0) for k, v in outputs.items()}, targets)
    for name in ("heatmap", "displacement"):
        assert perfect[f"pose.{name}"] < 1e-5 < worse[f"pose.{name}"]
    if pose_offsets == "per_joint":  # a shared offset cannot fit joints that share a cell
        assert perfect["pose.offset"] < 1e-5 < worse["pose.offset"]


@pytest.mark.parametrize("regression", ["center", "region"])
def test_region_regression_decodes_truth_from_a_peak_one_cell_off(regression: str) -> None:
    """With region targets, a person-center peak one cell below the true center cell still
    decodes the true box and (unsnapped) keypoints; center targets say nothing off the center cell."""
    pose, outputs, targets, sample = pose_setup(regression=regression)
    index = int(targets["det.index"][0, 0])
    heatmap = torch.full_like(outputs["det.heatmap"], -CONFIDENT)
    heatmap.view(1, 2, -1)[0, 1, index + 32] = CONFIDENT  # the cell below person 0's center cell
    found = decode_poses({**outputs, "det.heatmap": heatmap}, STRIDE, person_label=1, k=1, threshold=2.0)
    box_error = (found.boxes[0, 0] - sample.boxes[0]).abs().max().item()
    keypoint_error = (found.keypoints[0, 0] - sample.keypoints[0, :, :2])[sample.keypoints[0, :, 2] > 0].abs().max()
    if regression == "region":
        assert box_error < 1e-4 and keypoint_error < 1e-4
    else:
        assert box_error >= STRIDE and keypoint_error >= STRIDE


def test_pose_region_targets() -> None:
    """Every cell of a person's region holds the vectors from its corner to the joints."""
    _, _, targets, sample = pose_setup(regression="region")
    weight = targets["pose.displacement_weight"][0]  # [J, h, w]
    region = (weight[0] > 0).nonzero().tolist()
    assert len(region) > 1
    joints = sample.keypoints[:, :, :2] / STRIDE  # [persons, J, 2]
    field = targets["pose.displacement_map"][0].reshape(NUM_KEYPOINTS, 2, 32, 32)
    labelled = sample.keypoints[:, :, 2] > 0  # [persons, J]
    for y, x in region:  # each region cell points at all labelled joints of one of the persons
        pointed = field[:, :, y, x] + torch.tensor([x, y])  # [J, 2]
        assert any(torch.allclose(pointed[labelled[i]], joints[i][labelled[i]], atol=1e-5) for i in range(2))
    assert weight[3][targets["det.region_weight"][0, 0] > 0].sum() == pytest.approx(1.0, abs=1e-5)  # person 0's only
    assert weight.sum().item() == pytest.approx(2 * NUM_KEYPOINTS - 1, abs=1e-4)


def test_pose_decode_snaps_regressed_keypoints_to_peaks() -> None:
    pose, outputs, _, sample = pose_setup()
    exact = pose.decode(outputs, STRIDE, k=2)[0]
    order = [int(torch.isclose(box, sample.boxes[1]).all()) for box in exact.boxes]  # decoded -> sample
    truth = sample.keypoints[order]  # [2, 17, 3]
    labelled = truth[..., 2] > 0
    assert torch.allclose(exact.keypoints[labelled], truth[..., :2][labelled], atol=1e-4)
    second = order.index(1)  # its joint 3 is unlabelled: regressed to its center cell (88, 68), and the
    # joint-3 peak of the other person lies outside its box, so it must not snap there
    assert exact.keypoints[second, 3].tolist() == pytest.approx([88.0, 68.0])
    assert exact.keypoint_scores[second, 3] == 0.0
    decoy = dict(outputs)
    decoy["pose.heatmap"] = outputs["pose.heatmap"].clone()
    decoy["pose.heatmap"][0, 3, 17, 17] = CONFIDENT  # 5 cells away (within reach) but left of its box
    assert pose.decode(decoy, STRIDE, k=2)[0].keypoints[second, 3].tolist() == pytest.approx([88.0, 68.0])
    decoy["pose.heatmap"][0, 3, 17, 19] = CONFIDENT  # inside the box: snapped to
    assert pose.decode(decoy, STRIDE, k=2)[0].keypoints[second, 3].tolist() == pytest.approx([76.0, 68.0])
    shifted = dict(outputs)
    shifted["pose.displacement"] = outputs["pose.displacement"] + 1.5  # 6 px off for every joint
    snapped = pose.decode(shifted, STRIDE, k=2)[0]
    assert torch.allclose(snapped.keypoints[labelled], truth[..., :2][labelled], atol=1e-4)
    assert snapped.keypoint_scores[labelled].min() == pytest.approx(1.0, abs=1e-4)
    no_peaks = dict(shifted)
    no_peaks["pose.heatmap"] = torch.full_like(outputs["pose.heatmap"], -CONFIDENT)  # nothing to snap to
    regressed = pose.decode(no_peaks, STRIDE, k=2)[0]
    assert torch.allclose(regressed.keypoints, exact.keypoints + 6.0, atol=1e-4)
    assert regressed.keypoint_scores.max() == 0.0
    results = pose.to_coco([exact], [sample], category_ids=[1, 5])
    assert len(results) == 2 and len(results[0]["keypoints"]) == 3 * NUM_KEYPOINTS
    assert results[0]["category_id"] == 5


def test_pose_needs_person_class_of_detection() -> None:
    pose = PoseTask(in_channels=8, person_label=3)
    with pytest.raises(ValueError, match="det"):
        pose.check_tasks({"pose": pose})
    with pytest.raises(ValueError, match="person_label 3"):
        pose.check_tasks({"pose": pose, "det": DetectionTask(num_classes=2, in_channels=8)})
    with pytest.raises(ValueError, match="pose_offsets"):
        PoseTask(in_channels=8, pose_offsets="both")

