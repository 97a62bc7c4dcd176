"""The segmentation task: loss, decoding (argmax of upsampled logits) and RLE results."""

from __future__ import annotations

import torch

from deltalearn.data.sample import IGNORE_INDEX
from deltalearn.mcn.tasks import SegmentationTask
from deltalearn.mcn.tasks.segmentation import decode_segmentation, encode_rle, labels_to_original, upsample_logits

from ..samples import STRIDE, make_sample


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

