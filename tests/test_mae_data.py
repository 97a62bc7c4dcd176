"""MAE data: synthetic composites (determinism, masks that match the render, varied statistics)
and the image-folder dataset (recursive, bad images skipped and counted)."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from deltalearn.data.errors import DataError, DataWarning
from deltalearn.data.io import find_images, image_root
from deltalearn.data.synth import compose_scene, generate_composites, make_composite
from deltalearn.mae.config import MAEDataConfig
from deltalearn.mae.data import ImageFolder, denormalize, eval_transform, train_transform

SIZE = 48


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


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


def _roughness(image: np.ndarray, where: np.ndarray) -> float:
    """Mean absolute Laplacian of the gray image over the interior of ``where``."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    interior = cv2.erode(where.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_32F))[interior].mean()) if interior.sum() > 20 else np.nan


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


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """3 good images (one nested, one JPEG, one 40x24), a corrupt PNG, a truncated PNG, a text file."""
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(root / "sub" / "b.jpg")
    Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(root / "c.PNG")
    (root / "d.png").write_bytes(b"not an image at all")
    (root / "e.png").write_bytes((root / "a.png").read_bytes()[:200])
    (root / "notes.txt").write_text("ignored")
    return root


def test_find_images_is_recursive_and_by_suffix(folder: Path) -> None:
    names = [p.relative_to(folder).as_posix() for p in find_images(folder)]
    assert names == ["a.png", "c.PNG", "d.png", "e.png", "sub/b.jpg"]
    with pytest.raises(DataError, match="image folder not found"):
        find_images(folder / "missing")


def test_folder_without_images_is_an_error(folder: Path) -> None:
    (folder / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        find_images(folder / "empty")
    (folder / "bad").mkdir()
    (folder / "bad" / "x.png").write_bytes(b"garbage")
    with pytest.warns(DataWarning), pytest.raises(DataError, match="no readable image"):
        ImageFolder(folder / "bad", cache=True)


def test_cached_folder_skips_and_counts_bad_images(folder: Path) -> None:
    with pytest.warns(DataWarning, match="skipping image"):
        dataset = ImageFolder(folder, cache=True)
    assert len(dataset) == 3
    assert sorted(Path(p).name for p in dataset.skipped) == ["d.png", "e.png"]
    shapes = [tuple(dataset[i].shape) for i in range(3)]
    assert shapes == [(3, 32, 32), (3, 32, 32), (3, 24, 40)] and dataset[0].dtype == torch.uint8


def test_lazy_folder_replaces_a_bad_image_by_the_next(folder: Path) -> None:
    dataset = ImageFolder(folder, cache=False)
    assert len(dataset) == 5 and not dataset.skipped
    with pytest.warns(DataWarning, match="skipping image"):
        image = dataset[2]  # d.png, then e.png (truncated), then sub/b.jpg
    assert tuple(image.shape) == (3, 24, 40)
    assert len(dataset.skipped) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # each bad image is warned about once
        dataset[2]
    assert len(dataset.skipped) == 2


def test_image_root_prefers_images_subfolder(tmp_path: Path) -> None:
    assert image_root(tmp_path) == tmp_path
    (tmp_path / "images").mkdir()
    assert image_root(tmp_path) == tmp_path / "images"


def test_transforms_shape_and_normalisation() -> None:
    image = torch.full((3, 40, 24), 255, dtype=torch.uint8)
    image[:, :20] = 0
    crop = train_transform(MAEDataConfig(image_size=16, crop_scale=(1.0, 1.0), crop_ratio=(0.6, 0.6)))(image)
    assert crop.shape == (3, 16, 16) and crop.dtype == torch.float32
    resized = eval_transform((16, 16))(image)
    assert resized.shape == (3, 16, 16)
    rgb = denormalize(resized)
    assert torch.allclose(rgb[:, :7], torch.zeros(3, 7, 16), atol=1e-5)
    assert torch.allclose(rgb[:, 9:], torch.ones(3, 7, 16), atol=1e-5)
