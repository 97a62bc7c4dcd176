"""The detection task: targets, region regression, loss, decoding and COCO results."""

from __future__ import annotations

import pytest
import torch

from deltalearn.mcn.tasks import DetectionTask

from ..samples import CONFIDENT, DET_BOXES, STRIDE, make_sample


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

