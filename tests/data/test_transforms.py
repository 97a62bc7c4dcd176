"""Transforms move image, boxes, masks and keypoints together; flips swap left and right."""

import re

import pytest
import torch

from deltalearn.data.keypoints import KEYPOINT_NAMES, NUM_KEYPOINTS
from deltalearn.data.sample import Sample, empty_targets
from deltalearn.data.transforms import Letterbox, RandomHorizontalFlip, eval_transforms, train_transforms

LEFT_EYE, RIGHT_EYE = KEYPOINT_NAMES.index("left_eye"), KEYPOINT_NAMES.index("right_eye")


def make_sample(height: int = 60, width: int = 100) -> Sample:
    """One person box [10, 20, 40, 50) with a filled mask and two labelled eyes, one ball."""
    image = torch.zeros((3, height, width), dtype=torch.uint8)
    image[0, 20:50, 10:40] = 200
    masks = torch.zeros((2, height, width), dtype=torch.bool)
    masks[0, 20:50, 10:40] = True
    masks[1, 5:15, 70:80] = True
    keypoints = torch.zeros((2, NUM_KEYPOINTS, 3))
    keypoints[0, LEFT_EYE] = torch.tensor([30.0, 25.0, 2])  # the person faces us: left eye on the right
    keypoints[0, RIGHT_EYE] = torch.tensor([20.0, 25.0, 1])
    crowd = torch.zeros((height, width), dtype=torch.bool)
    crowd[50:, :10] = True
    return Sample(
        image=image,
        boxes=torch.tensor([[10.0, 20.0, 40.0, 50.0], [70.0, 5.0, 80.0, 15.0]]),
        labels=torch.tensor([0, 1]),
        masks=masks,
        keypoints=keypoints,
        crowd=crowd,
        orig_size=(height, width),
        ann_ids=[11, 12],
    )


def test_flip_mirrors_everything_and_swaps_left_right():
    sample = make_sample()
    flipped = RandomHorizontalFlip(p=1.0)(sample)
    width = sample.size[1]
    assert torch.equal(flipped.boxes[0], torch.tensor([width - 40.0, 20.0, width - 10.0, 50.0]))
    assert torch.equal(flipped.masks, sample.masks.flip(-1))
    assert torch.equal(flipped.image, sample.image.flip(-1))
    assert torch.equal(flipped.crowd, sample.crowd.flip(-1))
    # The right eye (v=1) now carries the mirrored position of the old left eye, and vice versa.
    assert flipped.keypoints[0, RIGHT_EYE].tolist() == [width - 1 - 30.0, 25.0, 2.0]
    assert flipped.keypoints[0, LEFT_EYE].tolist() == [width - 1 - 20.0, 25.0, 1.0]
    # A mirrored person facing the camera still has the left eye on the image's right.
    assert flipped.keypoints[0, LEFT_EYE, 0] > flipped.keypoints[0, RIGHT_EYE, 0]
    assert RandomHorizontalFlip(p=0.0)(sample) is sample
    # Twice is the identity.
    twice = RandomHorizontalFlip(p=1.0)(flipped)
    assert torch.equal(twice.keypoints, sample.keypoints) and torch.equal(twice.boxes, sample.boxes)


def test_letterbox_maps_back_to_original():
    sample = make_sample(height=60, width=100)
    boxed = Letterbox(128)(sample)
    assert boxed.size == (128, 128)
    assert abs(boxed.scale - 1.28) < 1e-6
    back = boxed.to_original(boxed.boxes.reshape(-1, 2)).reshape(-1, 4)
    assert torch.allclose(back, sample.boxes, atol=1e-4)
    kp_back = boxed.to_original(boxed.keypoints[0, [LEFT_EYE, RIGHT_EYE], :2])
    assert torch.allclose(kp_back, sample.keypoints[0, [LEFT_EYE, RIGHT_EYE], :2], atol=1e-4)
    # Padding (rows below 60 * 1.28 = 76.8) holds no object and no crowd.
    assert not boxed.masks[:, 78:].any() and not boxed.crowd[78:].any()
    assert boxed.masks[0].sum() > sample.masks[0].sum()
    assert eval_transforms(128)(sample).size == (128, 128)


def test_train_transforms_keep_sample_consistent():
    torch.manual_seed(0)
    transform = train_transforms(64, scale_range=(1.5, 2.5), shift=0.3)
    dropped_keypoints = 0
    for _ in range(30):
        out = transform(make_sample())
        n = len(out.labels)
        assert out.size == (64, 64)
        assert out.boxes.shape == (n, 4) and out.masks.shape == (n, 64, 64) and out.keypoints.shape == (n, 17, 3)
        assert len(out.ann_ids) == n
        assert (out.boxes[:, 0] >= 0).all() and (out.boxes[:, 2] <= 64).all()
        assert (out.boxes[:, 2] - out.boxes[:, 0] >= 1).all()
        xy, vis = out.keypoints[..., :2], out.keypoints[..., 2]
        inside = (xy[..., 0] >= 0) & (xy[..., 0] < 64) & (xy[..., 1] >= 0) & (xy[..., 1] < 64)
        assert inside[vis > 0].all()
        assert (xy[vis == 0] == 0).all()
        if 0 in out.labels.tolist():
            dropped_keypoints += int((vis[out.labels == 0] == 0)[:, [LEFT_EYE, RIGHT_EYE]].sum())
    assert dropped_keypoints > 0  # strong zoom pushes some eyes out of the crop


def test_train_transforms_are_seeded():
    transform = train_transforms(64)
    torch.manual_seed(3)
    a = transform(make_sample())
    torch.manual_seed(3)
    b = transform(make_sample())
    assert torch.equal(a.image, b.image) and torch.equal(a.boxes, b.boxes)


def test_transforms_of_an_image_without_objects():
    empty = Sample(image=torch.zeros((3, 40, 50), dtype=torch.uint8), **empty_targets(40, 50), orig_size=(40, 50))
    for transform in (train_transforms(64), eval_transforms(64), RandomHorizontalFlip(1.0)):
        out = transform(empty)
        assert len(out.labels) == 0 and out.keypoints.shape == (0, NUM_KEYPOINTS, 3)
        assert out.masks.shape[1:] == out.size


def _hue(transform) -> float | None:
    """The hue range of the ColorJitter inside ``transform`` (None: no ColorJitter, 0: no hue step)."""
    text = repr(transform)
    if "ColorJitter" not in text:
        return None
    found = re.search(r"hue=\(([-0-9.e]+), ([-0-9.e]+)\)", text.split("ColorJitter")[1])
    return float(found.group(2)) if found else 0.0


def test_hue_jitter_defaults_to_a_share_of_colour_jitter():
    """No colour jitter means no hue step either, unless hue_jitter asks for one."""
    assert _hue(train_transforms(64, color_jitter=0.0)) is None
    assert _hue(train_transforms(64, color_jitter=0.3)) == pytest.approx(0.05)
    assert _hue(train_transforms(64, color_jitter=0.12)) == pytest.approx(0.02)
    assert _hue(train_transforms(64, color_jitter=0.3, hue_jitter=0.0)) == 0.0
    assert _hue(train_transforms(64, color_jitter=0.0, hue_jitter=0.1)) == pytest.approx(0.1)


def test_random_affine_warps_like_torchvision():
    """The OpenCV warp draws the same parameters as torchvision's RandomAffine: boxes and
    keypoints equal, images within interpolation rounding, masks all but equal."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from deltalearn.data.transforms import RandomAffine, to_tv

    settings = dict(degrees=0, translate=(0.2, 0.2), scale=(0.6, 1.4), interpolation=v2.InterpolationMode.BILINEAR,
                    fill={tv_tensors.Image: 124, tv_tensors.Mask: 0})
    generator = torch.Generator().manual_seed(0)
    sample = make_sample(height=64, width=96)
    sample.image = torch.randint(0, 256, sample.image.shape, dtype=torch.uint8, generator=generator)
    for seed in range(8):
        torch.manual_seed(seed)
        expected = v2.RandomAffine(**settings)(to_tv(sample))
        torch.manual_seed(seed)
        found = RandomAffine(**settings)(to_tv(sample))
        for key in ("boxes", "keypoints", "visibility", "labels"):
            assert torch.equal(found[key], expected[key]), key
        assert type(found["image"]) is tv_tensors.Image and found["image"].dtype == torch.uint8
        assert (found["image"].int() - expected["image"].int()).abs().float().mean() < 2.0
        for key in ("masks", "crowd"):
            assert type(found[key]) is tv_tensors.Mask and found[key].shape == expected[key].shape
            assert (found[key] != expected[key]).float().mean() < 0.01, key
    # the fill: a shrunk image is framed by grey 124 and no mask
    torch.manual_seed(0)
    shrunk = RandomAffine(degrees=0, scale=(0.5, 0.5), fill={tv_tensors.Image: 124, tv_tensors.Mask: 0})(to_tv(sample))
    assert (shrunk["image"][:, 0] == 124).all() and not shrunk["masks"][:, 0].any()
    # a rotation is torchvision's own warp
    torch.manual_seed(1)
    rotated = RandomAffine(degrees=(30, 30))(to_tv(sample))
    torch.manual_seed(1)
    assert torch.equal(rotated["image"], v2.RandomAffine(degrees=(30, 30))(to_tv(sample))["image"])


def test_letterbox_of_a_sample_at_the_input_size_only_cleans_it():
    """Nothing to pad or resize: the same pixels, and the same clean-up as any transform
    (a box thinner than a pixel dropped)."""
    sample = make_sample(height=64, width=64)
    sample.boxes = torch.tensor([[10.0, 20.0, 40.0, 50.0], [70.0 - 60, 5.0, 70.5 - 60, 15.0]])  # the second 0.5 px wide
    boxed = Letterbox(64)(sample)
    assert torch.equal(boxed.image, sample.image) and boxed.scale == sample.scale
    assert boxed.labels.tolist() == [0] and torch.equal(boxed.masks, sample.masks[:1])
