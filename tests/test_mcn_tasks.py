"""Heatmap helpers, losses and the three tasks' encode / loss / decode on small hand-made samples."""

from __future__ import annotations

import math

import pytest
import torch

from deltalearn.data.keypoints import NUM_KEYPOINTS
from deltalearn.data.sample import IGNORE_INDEX, Sample
from deltalearn.evaluation import ConfusionMatrix, evaluate_coco, segmentation_metrics
from deltalearn.mcn.heatmaps import (
    NOT_A_PEAK,
    draw_gaussian,
    find_peaks,
    focal_prior_bias,
    gather_cells,
    gaussian_radius,
    integer_radius,
    neighbourhood_max,
    topk_logit_peaks,
    topk_peaks,
)
from deltalearn.mcn.losses import dice_loss, focal_loss, masked_l1, segmentation_ce
from deltalearn.mcn.tasks import DetectionTask, PoseTask, SegmentationTask
from deltalearn.mcn.tasks.pose import decode_poses
from deltalearn.mcn.tasks.segmentation import decode_segmentation, encode_rle, labels_to_original, upsample_logits

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


def person_keypoints(box: list[float]) -> torch.Tensor:
    """[17, 3] keypoints spread over ``box`` (all labelled)."""
    x1, y1, x2, y2 = box
    t = torch.linspace(0.1, 0.9, NUM_KEYPOINTS)
    xs = x1 + (x2 - x1) * (0.3 + 0.4 * (torch.arange(NUM_KEYPOINTS) % 2))
    ys = y1 + (y2 - y1) * t
    return torch.stack([xs, ys, torch.full_like(xs, 2.0)], dim=1)


# --- heatmaps ---------------------------------------------------------------------------------

def test_gaussian_radius_known_values() -> None:
    # For a square of side s the third case rules: 2.8 r^2 - 2.8 s r - 0.3 s^2 = 0 as CenterNet
    # writes it, r = s (sqrt(11.2) - 2.8) / 2 = 0.2733 s.
    for side in (4.0, 10.0, 60.0):
        assert gaussian_radius(side, side) == pytest.approx(side * (math.sqrt(11.2) - 2.8) / 2)
    assert gaussian_radius(20, 10) == pytest.approx(3.678, abs=1e-3)  # (-42 + sqrt(2436)) / 2
    assert integer_radius(10, 10) == 2 and integer_radius(1, 1) == 0
    assert gaussian_radius(20, 20, min_overlap=0.9) < gaussian_radius(20, 20)


def test_draw_gaussian_peak_and_border() -> None:
    heat = torch.zeros(16, 16)
    draw_gaussian(heat, (5, 7), radius=2)
    assert heat[7, 5] == 1.0 and heat.max() == 1.0
    assert heat[7, 4] == heat[7, 6] == heat[6, 5] == heat[8, 5] < 1.0
    assert heat[7, 8] == 0.0  # outside the radius
    draw_gaussian(heat, (0, 15), radius=3)  # clipped at the corner
    assert heat[15, 0] == 1.0


def test_find_peaks_and_topk_recover_planted_peaks() -> None:
    torch.manual_seed(0)
    heat = torch.rand(2, 3, 20, 24) * 0.05  # background noise
    planted = [(0, 1, 4, 9, 0.9), (0, 2, 15, 3, 0.8), (1, 0, 10, 20, 0.7)]  # (batch, class, y, x, score)
    for b, c, y, x, score in planted:
        draw_gaussian(heat[b, c], (x, y), radius=2)
        heat[b, c, y, x] = score
    found = topk_peaks(find_peaks(heat), k=2)
    assert found["score"][0].tolist() == pytest.approx([0.9, 0.8])
    assert found["channel"][0].tolist() == [1, 2]
    assert found["y"][0].tolist() == [4, 15] and found["x"][0].tolist() == [9, 3]
    assert (found["channel"][1, 0], found["y"][1, 0], found["x"][1, 0]) == (0, 10, 20)
    assert found["index"][1, 0] == 10 * 24 + 20
    assert gather_cells(heat, found["index"])[1, 0, 0] == pytest.approx(0.7)


@pytest.mark.parametrize("kernel", [3, 5])
def test_neighbourhood_max_is_the_padded_max_pool(kernel: int) -> None:
    generator = torch.Generator().manual_seed(kernel)
    heat = torch.randn(2, 3, 11, 8, generator=generator)
    heat[0, 0, :, :] = heat[0, 0, :1, :1]  # flat plateau: every cell is its own maximum
    expected = torch.nn.functional.max_pool2d(heat, kernel, stride=1, padding=kernel // 2)
    assert torch.equal(neighbourhood_max(heat, kernel), expected)


def test_peaks_of_logits_are_the_peaks_of_their_sigmoid() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 16, 12, generator=generator) * 3
    expected = topk_peaks(find_peaks(torch.sigmoid(logits)), k=30)
    found = topk_logit_peaks(logits, k=30)
    torch.testing.assert_close(found["score"], expected["score"])
    for key in ("channel", "index", "x", "y"):
        assert torch.equal(found[key], expected[key]), key
    few = topk_logit_peaks(torch.zeros(1, 1, 2, 2) - 50.0, k=3)  # 4 equal cells: all peaks
    assert few["score"].shape == (1, 3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_peaks_of_low_precision_logits_are_float32_and_finite(dtype: torch.dtype) -> None:
    logits = (torch.randn(1, 3, 9, 7, generator=torch.Generator().manual_seed(1)) * 3).to(dtype)
    peaks = find_peaks(logits, fill=NOT_A_PEAK)
    assert peaks.dtype == torch.float32 and not torch.isnan(peaks).any()
    assert torch.equal(peaks, find_peaks(logits.float(), fill=NOT_A_PEAK))
    is_peak = peaks > NOT_A_PEAK
    assert is_peak.any() and torch.equal(peaks[is_peak], logits.float()[is_peak])


def test_focal_prior_bias() -> None:
    assert torch.sigmoid(torch.tensor(focal_prior_bias(0.1))) == pytest.approx(0.1)


# --- losses -----------------------------------------------------------------------------------

def test_focal_loss_minimal_for_perfect_and_grows_with_error() -> None:
    target = torch.zeros(1, 2, 16, 16)
    draw_gaussian(target[0, 0], (4, 4), 2)
    draw_gaussian(target[0, 1], (10, 12), 3)
    perfect = torch.where(target.eq(1), CONFIDENT, -CONFIDENT)
    losses = [focal_loss(perfect + error * torch.where(target.eq(1), -1.0, 1.0), target).item()
              for error in (0.0, 20.0, 28.0, 31.0, 35.0)]
    assert losses[0] < 1e-6
    assert all(a < b for a, b in zip(losses, losses[1:]))
    false_positive = perfect.clone()
    false_positive[0, 0, 12, 2] = CONFIDENT
    weight = torch.ones(1, 1, 16, 16)
    weight[..., 12, 2] = 0.0  # a crowd cell
    assert focal_loss(false_positive, target).item() > 1.0
    assert focal_loss(false_positive, target, weight).item() < 1e-6


def test_masked_l1_and_segmentation_losses() -> None:
    target = torch.randn(2, 5, 2)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.float32)
    assert masked_l1(target, target, mask) == 0.0
    noisy = target.clone()
    noisy[0, 3] += 100.0  # masked out
    assert masked_l1(noisy, target, mask) == 0.0
    assert masked_l1(target + 0.5, target, mask) == pytest.approx(0.5)
    assert masked_l1(target + 1.0, target, mask) == pytest.approx(1.0)

    labels = torch.randint(0, 3, (2, 8, 8))
    labels[0, 0, 0] = IGNORE_INDEX
    logits = torch.nn.functional.one_hot(labels.clamp(max=2), 3).permute(0, 3, 1, 2).float() * CONFIDENT
    wrong = logits.roll(1, dims=1)
    assert segmentation_ce(logits, labels) < 1e-6
    assert segmentation_ce(logits * 0.1, labels) < segmentation_ce(wrong, labels)
    assert dice_loss(logits, labels) < 1e-3 < dice_loss(wrong, labels)


# --- detection --------------------------------------------------------------------------------

DET_BOXES = [[10.0, 12.0, 50.0, 40.0], [70.5, 60.2, 90.1, 110.7], [20.0, 80.0, 28.0, 96.0]]


def test_detection_encode_centers_sizes_and_crowd() -> None:
    det = DetectionTask(num_classes=2, in_channels=8, max_objects=4)
    sample = make_sample(DET_BOXES, [0, 1, 0], crowd_box=(100, 0, 128, 32))
    targets = det.encode([sample], STRIDE)
    assert targets["det.heatmap"].shape == (1, 2, 32, 32)
    assert targets["det.heatmap"][0, 1, 21, 20] == 1.0  # center (80.3, 85.45) / 4 -> cell (20, 21)
    assert targets["det.index"][0, 1] == 21 * 32 + 20
    assert targets["det.mask"][0].tolist() == [1, 1, 1, 0]
    assert targets["det.size"][0, 1].tolist() == pytest.approx([19.6 / 4, 50.5 / 4], abs=1e-5)
    assert targets["det.offset"][0, 1].tolist() == pytest.approx([0.075, 0.3625], abs=1e-5)
    weight = targets["det.heatmap_weight"][0, 0]
    assert weight[0:8, 25:32].sum() == 0 and weight[8:, :].min() == 1 and weight[:, :25].min() == 1


def test_detection_region_targets() -> None:
    """box_regression="region": every cell of the shrunk box learns the box size and the
    vector to the box center; weights are a Gaussian summing to 1 per box."""
    det = DetectionTask(num_classes=2, in_channels=8, box_regression="region")
    targets = det.encode([make_sample(DET_BOXES, [0, 1, 0])], STRIDE)
    weight, size, offset = targets["det.region_weight"][0, 0], targets["det.size_map"][0], targets["det.offset_map"][0]
    # box 1: center (80.3, 85.45) px = (20.075, 21.3625) cells, size (4.9, 12.625) cells
    # cells whose centers lie within 0.54 * size / 2 of it: x + 0.5 in [18.75, 21.40], y + 0.5 in [17.95, 24.77]
    window = weight[14:29, 17:24]  # around box 1 only
    assert (window > 0).nonzero()[:, 0].unique().add(14).tolist() == list(range(18, 25))
    assert (window > 0).nonzero()[:, 1].unique().add(17).tolist() == [19, 20]
    assert weight[21, 20] == window.max()  # the center cell weighs most
    assert window.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert weight.sum().item() == pytest.approx(3.0, abs=1e-5)  # one per box
    assert size[:, 18, 19].tolist() == pytest.approx([4.9, 12.625], abs=1e-5)
    assert offset[:, 18, 19].tolist() == pytest.approx([20.075 - 19, 21.3625 - 18], abs=1e-5)
    assert offset[:, 21, 20].tolist() == pytest.approx(targets["det.offset"][0, 1].tolist(), abs=1e-5)
    # a small box (2 x 4 cells) inside a big one keeps its own cells
    nested = det.encode([make_sample([[0.0, 0.0, 128.0, 128.0], [60.0, 60.0, 68.0, 76.0]], [0, 0])], STRIDE)
    assert nested["det.size_map"][0, :, 17, 16].tolist() == pytest.approx([2.0, 4.0])
    assert nested["det.region_weight"][0, 0, 17, 16] > 0


def test_detection_region_loss_is_centernet_loss_for_one_cell_regions() -> None:
    """A box whose region is its center cell has the same size and offset loss either way."""
    sample = make_sample([[40.0, 40.0, 46.0, 45.0]], [0])  # 1.5 x 1.25 cells: nothing else is in
    losses = {}
    for mode in ("center", "region"):
        det = DetectionTask(num_classes=2, in_channels=8, box_regression=mode)
        targets = det.encode([sample], STRIDE)
        outputs = {"det.heatmap": torch.zeros((1, 2, 32, 32)), "det.size": torch.full((1, 2, 32, 32), 3.0),
                   "det.offset": torch.full((1, 2, 32, 32), 0.25)}
        losses[mode] = det.loss(outputs, targets)
    assert losses["region"]["det.size"].item() == pytest.approx(losses["center"]["det.size"].item())
    assert losses["region"]["det.offset"].item() == pytest.approx(losses["center"]["det.offset"].item())


@pytest.mark.parametrize("box_regression", ["center", "region"])
def test_detection_loss_zero_for_perfect_outputs_and_grows(box_regression: str) -> None:
    det = DetectionTask(num_classes=2, in_channels=8, box_regression=box_regression)
    targets = det.encode([make_sample(DET_BOXES, [0, 1, 0]), make_sample(DET_BOXES[:1], [1])], STRIDE)
    outputs = det.oracle_outputs(targets, STRIDE)
    outputs["det.heatmap"] = torch.where(targets["det.heatmap"].eq(1), CONFIDENT, -CONFIDENT)
    perfect = det.loss(outputs, targets)
    assert set(perfect) == {"det.heatmap", "det.size", "det.offset"}
    assert all(v.item() < 1e-5 for v in perfect.values())
    for name in ("heatmap", "size", "offset"):
        worse = dict(outputs)
        worse[f"det.{name}"] = outputs[f"det.{name}"] + (-CONFIDENT if name == "heatmap" else 0.5)
        much_worse = dict(outputs)
        much_worse[f"det.{name}"] = outputs[f"det.{name}"] + (-2 * CONFIDENT if name == "heatmap" else 2.0)
        losses = [det.loss(o, targets)[f"det.{name}"].item() for o in (outputs, worse, much_worse)]
        assert losses[0] < losses[1] < losses[2], name


def test_detection_decode_and_coco_results() -> None:
    det = DetectionTask(num_classes=2, in_channels=8)
    sample = make_sample(DET_BOXES, [0, 1, 0])
    sample.scale, sample.offset, sample.orig_size = 0.5, (0.0, 8.0), (240, 256)
    decoded = det.decode(det.oracle_outputs(det.encode([sample], STRIDE), STRIDE), STRIDE, k=5)[0]
    assert decoded.boxes.shape == (5, 4)
    assert decoded.scores[:3].tolist() == pytest.approx([1.0] * 3, abs=1e-4)
    results = det.to_coco([decoded], [sample], category_ids=[1, 3], min_score=0.5)
    assert len(results) == 3
    truth = {tuple(b) for b in DET_BOXES}
    for entry in results:
        x, y, w, h = entry["bbox"]
        box = (x * 0.5, y * 0.5 + 8.0, (x + w) * 0.5, (y + h) * 0.5 + 8.0)  # back to input pixels
        assert min(max(abs(a - b) for a, b in zip(box, t)) for t in truth) < 0.01
        assert entry["category_id"] in (1, 3) and entry["image_id"] == 7


def test_loss_weights() -> None:
    det = DetectionTask(num_classes=1, in_channels=8, term_weights={"size": 0.0}, weight=2.0)
    targets = det.encode([make_sample(DET_BOXES[:1], [0])], STRIDE)
    outputs = {k: v + 0.3 for k, v in det.oracle_outputs(targets, STRIDE).items()}
    losses = det.loss(outputs, targets)
    assert "det.size" not in losses
    assert losses["det.offset"].item() == pytest.approx(2.0 * 0.3, rel=1e-4)
    with pytest.raises(ValueError, match="unknown loss terms"):
        DetectionTask(num_classes=1, in_channels=8, term_weights={"sizes": 1.0})


# --- segmentation -----------------------------------------------------------------------------

def test_segmentation_loss_decode_and_rle() -> None:
    seg = SegmentationTask(num_classes=2, in_channels=8, term_weights={"dice": 1.0})
    sample = make_sample([[8.0, 8.0, 64.0, 64.0], [72.0, 16.0, 120.0, 104.0]], [0, 1], crowd_box=(0, 120, 8, 128))
    targets = seg.encode([sample], STRIDE)
    assert targets["seg.mask"][0, 125, 2] == IGNORE_INDEX
    outputs = {"seg.logits": seg.oracle_outputs(targets, STRIDE)["seg.logits"] * 10}  # sharper
    perfect = seg.loss(outputs, targets)
    worse = seg.loss({"seg.logits": outputs["seg.logits"].roll(1, dims=1)}, targets)
    # Boxes lie on the 4 px grid; only their 8 corner pixels are lost (bilinear upsampling
    # rounds corners off), hence a small but non-zero minimum.
    assert perfect["seg.ce"] < 0.02 and perfect["seg.dice"] < 1e-3
    assert worse["seg.ce"] > 1.0 and worse["seg.dice"] > 0.5
    labels = seg.decode(outputs, STRIDE)[0].labels
    valid = targets["seg.mask"][0] != IGNORE_INDEX
    assert (labels[valid] != targets["seg.mask"][0][valid]).sum() == 8
    sample.scale, sample.offset, sample.orig_size = 0.5, (0.0, 0.0), (256, 256)
    original = labels_to_original(labels, sample)
    assert original.shape == (256, 256) and original[40, 40] == 1 and original[100, 200] == 2
    entries = seg.to_coco([seg.decode(outputs, STRIDE)[0]], [sample], category_ids=[1, 3])
    assert sorted(e["category_id"] for e in entries) == [1, 3]
    assert entries[0]["segmentation"] == encode_rle(original == int(entries[0]["category_id"] == 3) + 1)


def test_segmentation_decoding_is_the_argmax_of_upsampled_logits() -> None:
    """Labels of every pixel from bilinearly upsampled logits (not of the 4 px cells), ties to
    the lowest label (background): the decision the IoU ceiling of 0.949 was measured with."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 7, generator=generator)
    logits[:, 2] = logits[:, 1]  # exact ties between two classes
    logits[1, :, 0, 0] = 0.0  # a cell where all classes tie
    expected = upsample_logits(logits, STRIDE).argmax(dim=1)
    found = decode_segmentation({"seg.logits": logits}, STRIDE).labels
    assert found.dtype == torch.int64 and found.shape == (2, 20, 28)
    assert torch.equal(found, expected) and found[1, 0, 0] == 0
    per_cell = logits.argmax(dim=1).repeat_interleave(STRIDE, 1).repeat_interleave(STRIDE, 2)
    assert (found != per_cell).any()  # near class borders the pixels decide, not their cells


def test_binary_segmentation_decoding_equals_the_argmax() -> None:
    """Background + one class take the sign of the upsampled difference: the same labels."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 2, 9, 6, generator=generator)
    logits[0, 1, 2:4] = logits[0, 0, 2:4]  # ties go to background
    expected = upsample_logits(logits, STRIDE).max(dim=1).indices
    found = decode_segmentation({"seg.logits": logits}, STRIDE).labels
    assert found.dtype == torch.int64 and found.shape == (3, 36, 24)
    assert torch.equal(found, expected) and found.any() and not found.all()


# --- pose -------------------------------------------------------------------------------------

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


# --- evaluation -------------------------------------------------------------------------------

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


def test_confusion_matrix_iou() -> None:
    target = torch.tensor([[0, 0, 1, 1], [0, 2, 2, IGNORE_INDEX]])
    prediction = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 1]])
    matrix = ConfusionMatrix(num_classes=4)
    matrix.update(prediction, target)
    iou = matrix.iou()
    assert iou[:3].tolist() == pytest.approx([2 / 4, 2 / 3, 1 / 2]) and math.isnan(iou[3])
    metrics = segmentation_metrics(matrix, person_label=0)
    assert metrics["seg_iou"] == pytest.approx(2 / 3)
    assert metrics["seg_miou"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3)
