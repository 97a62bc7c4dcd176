"""The MAE's composite generator: same seed same bytes, files that are the render, masks that cover the painted objects."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from deltalearn.data.synth import compose_scene, generate_composites, make_composite

SIZE = 48


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _roughness(image: np.ndarray, where: np.ndarray) -> float:
    """Mean absolute Laplacian of the gray image over the interior of ``where``."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    interior = cv2.erode(where.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[interior].mean()) if interior.sum() > 20 else np.nan


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path) -> None:
    one = generate_composites(tmp_path / "a", num_images=6, size=SIZE, seed=3, workers=1, progress=False)
    generate_composites(tmp_path / "b", num_images=6, size=SIZE, seed=3, workers=2, progress=False)
    generate_composites(tmp_path / "c", num_images=6, size=SIZE, seed=4, workers=1, progress=False)
    a, b, c = (_folder_bytes(tmp_path / name) for name in "abc")
    assert sorted(a) == [f"{sub}/{i:06d}.png" for sub in ("images", "masks") for i in range(6)]
    assert a == b
    assert all(a[name] != c[name] for name in a if name.startswith("images/"))
    assert one["images"] == 6 and one["images_per_s"] > 0 and 0 < one["mean_foreground"] < 1


def test_written_files_are_the_render(tmp_path: Path) -> None:
    generate_composites(tmp_path, num_images=4, size=SIZE, seed=9, workers=1, progress=False)
    for index in range(4):
        image, foreground = make_composite(9, index, SIZE)
        written = np.asarray(Image.open(tmp_path / "images" / f"{index:06d}.png"))
        mask = Image.open(tmp_path / "masks" / f"{index:06d}.png")
        assert mask.mode == "L" and mask.size == (SIZE, SIZE)
        assert np.array_equal(written, image)
        assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 255}
        assert np.array_equal(np.asarray(mask) == 255, foreground)


def test_mask_covers_exactly_the_painted_objects() -> None:
    """Outside the mask the image is the untouched background; inside, objects were painted."""
    for index in range(12):
        background, image, foreground = compose_scene(np.random.default_rng([1, index]), SIZE)
        assert foreground.any() and not foreground.all()
        assert np.array_equal(image[~foreground], background[~foreground])
        changed = (image != background).any(-1)
        assert changed[foreground].mean() > 0.8  # a painted pixel may match the background by chance


def test_object_is_sometimes_smoother_sometimes_noisier() -> None:
    ratios = []
    for index in range(40):
        _, image, foreground = compose_scene(np.random.default_rng([0, index]), 64)
        ratios.append(_roughness(image, foreground) / _roughness(image, ~foreground))
    ratios = np.array([r for r in ratios if np.isfinite(r)])
    assert (ratios < 0.5).sum() >= 4 and (ratios > 2.0).sum() >= 4


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="--images"):
        generate_composites("unused", num_images=-1)
    with pytest.raises(ValueError, match="--size"):
        generate_composites("unused", size=8)

