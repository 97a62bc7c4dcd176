"""Fixtures shared by the tests of this folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deltalearn.data.synth import generate_composites
from deltalearn.mae.seg_head import train_seg_head

from .tiny import SIZE, fresh_mae, tiny_config


@pytest.fixture(scope="package")
def composites(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("composites")
    generate_composites(folder, 16, SIZE, seed=0, workers=1, progress=False)
    return folder


@pytest.fixture(scope="package")
def frozen_run(composites: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A head with refinement overfit on 16 ground-truth masks, encoder frozen."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("frozen")
    result = train_seg_head(fresh_mae(), composites, composites / "masks", run, tiny_config(60), mae_source="random")
    return run, result

