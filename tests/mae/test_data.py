"""The MAE's image folder: recursive listing, bad images skipped and counted, the images/ subfolder, transforms."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deltalearn.data.errors import DataError, DataWarning
from deltalearn.data.io import find_images, image_root
from deltalearn.mae.config import MAEDataConfig
from deltalearn.mae.data import ImageFolder, denormalize, eval_transform, train_transform


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

