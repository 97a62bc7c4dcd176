"""A toy regression that a tiny MLP learns in a few epochs, and the trainer set up on it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from deltalearn.engine.config import TrainConfig
from deltalearn.engine.distributed import make_loader
from deltalearn.engine.trainer import Trainer

CPU = torch.device("cpu")


def toy_data(n: int = 64, seed: int = 0) -> TensorDataset:
    """y = x . w + 0.5 with a fixed w: a regression a tiny MLP learns in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.5
    return TensorDataset(x, y)


def tiny_model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 32), nn.LayerNorm(32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 1))


def mse_loss(model: nn.Module, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    x, y = batch
    error = model(x) - y
    return {"loss": (error**2).mean(), "abs_error": error.abs().mean()}


def config(**changes) -> TrainConfig:
    base = TrainConfig(epochs=2, batch_size=8, lr=1e-2, warmup_epochs=0.5, precision="fp32", log_every=2,
                       grad_clip=1.0, seed=3)
    return replace(base, **changes)


def train(run_dir: Path, cfg: TrainConfig, model: nn.Module | None = None, **kwargs) -> tuple[Trainer, dict]:
    model = model if model is not None else tiny_model()
    loader = kwargs.pop("loader", None) or make_loader(toy_data(), cfg.batch_size, seed=cfg.seed)
    trainer = Trainer(model, kwargs.pop("loss_fn", mse_loss), loader, cfg, run_dir, device=CPU, **kwargs)
    return trainer, trainer.fit()


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

