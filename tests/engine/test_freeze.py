"""train.freeze: frozen parameters and BatchNorm statistics stay bit-identical; bad prefixes fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from deltalearn.config import ConfigError
from deltalearn.engine.freeze import freeze

from .toy import config, state_of, train


class Net(nn.Module):
    """A body with BatchNorm (running statistics) and two heads, one a name-prefix of the other."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(4, 32), nn.BatchNorm1d(32), nn.ReLU())
        self.head = nn.Linear(32, 1)
        self.head2 = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        return self.head(features) + self.head2(features)


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(prefix + ".")}


def test_frozen_parts_stay_bit_identical_and_the_rest_trains(tmp_path: Path) -> None:
    model = Net()
    before = state_of(model)
    trainer, _ = train(tmp_path, config(freeze=["body", "head"]), model=model)
    after = state_of(model)
    for prefix in ("body", "head"):  # weights and BatchNorm running statistics alike
        frozen = _part(before, prefix)
        assert frozen and all(torch.equal(v, after[k]) for k, v in frozen.items()), prefix
    assert not torch.equal(before["head2.weight"], after["head2.weight"])  # 'head' does not freeze 'head2'
    trained = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in model.head2.parameters()}
    assert not model.body[1].training and model.head2.training  # frozen BatchNorm held in eval mode


def test_without_freeze_batchnorm_statistics_move(tmp_path: Path) -> None:
    model = Net()
    before = state_of(model)
    train(tmp_path, config(), model=model)
    assert not torch.equal(before["body.1.running_mean"], model.state_dict()["body.1.running_mean"])


def test_bad_prefixes_are_clear_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"'bdy' names no parameter.*nearest valid prefixes: body"):
        freeze(Net(), ["bdy"])
    with pytest.raises(ConfigError, match="nearest valid prefixes: body, head, head2"):
        freeze(Net(), ["xyz"])
    with pytest.raises(ConfigError, match="freezes every parameter"):
        freeze(Net(), ["body", "head", "head2"])
