"""Distributed training helpers: the epoch sampler, their single-process no-ops, and two CPU
processes under torchrun (gloo) whose DDP keeps the ranks' weights identical."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deltalearn.engine.checkpoint import read_weights
from deltalearn.engine.distributed import EpochSampler, dist_info, wrap_model
from deltalearn.engine.metrics_log import read_metrics

from .toy import CPU, tiny_model

WORKER = Path(__file__).with_name("ddp_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def test_epoch_sampler_order_depends_on_seed_and_epoch_only() -> None:
    sampler = EpochSampler(range(20), seed=5)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    again = EpochSampler(range(20), seed=5)
    again.set_epoch(1)
    assert sorted(first) == list(range(20)) and first != second and list(again) == second


def test_single_process_distributed_helpers_are_no_ops() -> None:
    info = dist_info()
    assert (info.rank, info.world_size, info.is_main, info.enabled) == (0, 1, True, False)
    model = tiny_model()
    assert wrap_model(model, CPU) is model


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_two_processes_train_to_identical_weights(tmp_path: Path) -> None:
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(rank["ddp"] for rank in ranks)
    for key, value in ranks[0]["final"].items():
        assert torch.equal(value, ranks[1]["final"][key]), key
    assert any(not torch.equal(ranks[0]["final"][k], ranks[0]["initial"][k]) for k in ranks[0]["final"])
    # each rank trained on its own half of the data, every epoch
    assert len(ranks[0]["seen"]) == 2 * 16  # 2 epochs of 4 batches of 4 samples
    for epoch in (slice(0, 16), slice(16, 32)):
        seen = [set(rank["seen"][epoch]) for rank in ranks]
        assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(32))

    # rank 0 alone wrote the run folder, without DDP's "module." prefix
    saved = read_weights(tmp_path / "run" / "last.safetensors")
    assert saved.keys() == ranks[0]["final"].keys()
    assert all(torch.equal(saved[k], ranks[0]["final"][k]) for k in saved)
    steps = [r["step"] for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert steps == list(range(1, 9))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_the_command_line_leaves_the_process_group_when_its_command_is_done(tmp_path: Path) -> None:
    """Under torchrun a command's trainer joins the group; the ``deltalearn`` process owns it and
    must leave it (NCCL warns of leaked communicators otherwise). One gloo rank stands in here."""
    import torch.distributed as dist

    from deltalearn.cli import main

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert main(["mcn", "synth", "--out", str(tmp_path / "synth"), "--images", "2", "--size", "64",
                     "--workers", "1"]) == 0
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
