"""Fixtures shared by the tests of this folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deltalearn.data.synth import generate_composites
from deltalearn.mae import create_mae, save_mae

from .graphs import VARIANT


@pytest.fixture(scope="package")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_mae(VARIANT).eval()


@pytest.fixture(scope="package")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 composites of 64 px, a corrupt image, and a 40x72 grayscale image whose mask is 64x64."""
    out = tmp_path_factory.mktemp("patch_graph_data")
    generate_composites(out, 6, 64, seed=0, workers=1, progress=False)
    (out / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    gray = np.random.default_rng(0).integers(0, 256, (40, 72), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(out / "images" / "gray.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(out / "masks" / "gray.png")
    return out


@pytest.fixture(scope="package")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("patch_graph_weights") / "mae.safetensors"
    save_mae(create_mae(VARIANT), path)
    return path

