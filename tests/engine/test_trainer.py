"""The training loop on CPU: learning, schedules, decay groups, resume, best weights, precision, time budgets, errors."""

from __future__ import annotations

import math
import time
from collections import namedtuple
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from deltalearn.engine import checkpoint as ckpt
from deltalearn.engine.distributed import make_loader
from deltalearn.engine.metrics_log import read_metrics
from deltalearn.engine.precision import cpu_supports_bf16
from deltalearn.engine.trainer import (Trainer, build_optimizer, build_scheduler, default_param_groups, lr_factor,
                                       to_device)

from .toy import CPU, assert_same, config, mse_loss, state_of, tiny_model, toy_data, train


def _killing_loss(kill_at_step: int):
    """A loss (with numpy and python randomness) that raises at the given call, like a killed run."""
    calls = {"n": 0}

    def loss_fn(model: nn.Module, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        calls["n"] += 1
        if calls["n"] == kill_at_step:
            raise KeyboardInterrupt
        x, y = batch
        x = x + torch.from_numpy(np.random.normal(0, 0.01, size=tuple(x.shape))).float()
        return mse_loss(model, [x, y])

    return loss_fn


def test_tiny_model_learns_a_regression(tmp_path: Path) -> None:
    trainer, result = train(tmp_path, config(epochs=15, lr=3e-2, grad_clip=0.0, log_every=8))
    epoch_losses = [r["loss"] for r in read_metrics(tmp_path) if r["split"] == "train"]
    assert len(epoch_losses) == 15  # one line per epoch of 8 steps
    assert epoch_losses[-1] < 0.1 * epoch_losses[0]
    assert result["epoch"] == 15 and result["step"] == 15 * 8
    assert result["train_loss"] == pytest.approx(epoch_losses[-1])
    assert (tmp_path / "curves.png").stat().st_size > 10_000  # every run draws its curves


def test_lr_factor_at_known_iterations() -> None:
    total, warmup = 100, 10
    assert lr_factor(0, total, warmup, "cosine") == pytest.approx(0.1)  # first step: 1/warmup
    assert lr_factor(4, total, warmup, "cosine") == pytest.approx(0.5)
    assert lr_factor(10, total, warmup, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, total, warmup, "cosine") == pytest.approx(0.5)  # half way through the decay
    assert lr_factor(100, total, warmup, "cosine") == pytest.approx(0.0)
    assert lr_factor(66, total, 0, "step") == 1.0  # 2/3 of 100 is 66.7
    assert lr_factor(67, total, 0, "step") == pytest.approx(0.1)
    assert lr_factor(88, total, 0, "step") == pytest.approx(0.1)  # 8/9 of 100 is 88.9
    assert lr_factor(89, total, 0, "step") == pytest.approx(0.01)
    assert lr_factor(50, total, warmup, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule 'linear'"):
        lr_factor(50, total, warmup, "linear")


def test_scheduler_sets_the_optimizer_lr_per_iteration() -> None:
    param = nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([param], lr=0.2)
    scheduler = build_scheduler(optimizer, config(epochs=3, warmup_epochs=1.0, lr=0.2), iters_per_epoch=10)
    seen = []
    for _ in range(30):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx(0.02)  # warm-up over the first epoch (10 steps)
    assert seen[9] == pytest.approx(0.2)
    assert seen[20] == pytest.approx(0.2 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # middle of the cosine
    assert all(a >= b for a, b in zip(seen[10:], seen[11:]))


def test_no_weight_decay_on_biases_and_norms(tmp_path: Path) -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.norm = nn.BatchNorm2d(4)
            self.head = nn.Linear(4, 2)
            self.pos_embed = nn.Parameter(torch.zeros(1, 5, 4))

        def no_weight_decay(self) -> set[str]:
            return {"pos_embed"}

    net = Net()
    decay, no_decay = default_param_groups(net, weight_decay=0.05)
    assert {id(p) for p in decay["params"]} == {id(net.conv.weight), id(net.head.weight)}
    assert {id(p) for p in no_decay["params"]} == {
        id(net.conv.bias), id(net.norm.weight), id(net.norm.bias), id(net.head.bias), id(net.pos_embed)
    }
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0

    model = tiny_model()
    trainer = Trainer(model, mse_loss, make_loader(toy_data(), 8), config(weight_decay=0.1), tmp_path, device=CPU)
    by_id = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert by_id[id(model[0].bias)] == 0.0 and by_id[id(model[1].weight)] == 0.0
    assert by_id[id(model[0].weight)] == 0.1


@pytest.mark.parametrize("loader_kind", ["epoch_sampler", "plain_shuffle"])
def test_resume_equals_an_uninterrupted_run_bit_for_bit(tmp_path: Path, loader_kind: str) -> None:
    cfg = config(epochs=2, log_every=1)

    def loader() -> DataLoader:
        if loader_kind == "epoch_sampler":
            return make_loader(toy_data(), 8, seed=cfg.seed)
        return DataLoader(toy_data(), batch_size=8, shuffle=True)  # order from the torch generator

    straight, _ = train(tmp_path / "straight", cfg, tiny_model(dropout=0.2), loader=loader(),
                        loss_fn=_killing_loss(kill_at_step=-1))

    with pytest.raises(KeyboardInterrupt):  # killed in the middle of epoch 2
        train(tmp_path / "killed", cfg, tiny_model(dropout=0.2), loader=loader(), loss_fn=_killing_loss(12))
    resumed, result = train(tmp_path / "killed", cfg, tiny_model(seed=7, dropout=0.2), loader=loader(),
                            loss_fn=_killing_loss(kill_at_step=-1), resume=True)

    assert result["epoch"] == 2 and result["step"] == 16
    assert_same(state_of(resumed.model), state_of(straight.model))
    a, b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for key in a:
        assert all(torch.equal(a[key][n], b[key][n]) for n in a[key])
    steps = [r["step"] for r in read_metrics(tmp_path / "killed") if r["split"] == "train"]
    assert steps == list(range(1, 17))  # the lines of the killed epoch were replaced, not repeated
    untimed = lambda run: [{k: v for k, v in r.items() if k != "steps_per_s"} for r in read_metrics(run)]  # noqa: E731
    assert untimed(tmp_path / "killed") == untimed(tmp_path / "straight")  # the clock aside


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ckpt.CheckpointError, match="holds no checkpoint"):
        Trainer(tiny_model(), mse_loss, make_loader(toy_data(), 8), config(), tmp_path, device=CPU, resume=True)


@pytest.mark.parametrize(("best_metric", "best_epoch"), [("score", 2), ("-score", 1)])
def test_best_checkpoint_follows_the_metric(tmp_path: Path, best_metric: str, best_epoch: int) -> None:
    scores = iter([0.5, 0.9, 0.7])
    snapshots = []

    def evaluate(model: nn.Module) -> dict[str, float]:
        snapshots.append(state_of(model))
        return {"score": next(scores)}

    trainer, result = train(tmp_path, config(epochs=3, best_metric=best_metric), evaluate=evaluate)
    assert result["score"] == 0.7
    assert_same(ckpt.read_weights(tmp_path / "best.safetensors"), snapshots[best_epoch - 1])
    assert_same(ckpt.read_weights(tmp_path / "last.safetensors"), snapshots[2])
    assert trainer.best == {"score": 0.9, "-score": 0.5}[best_metric]
    assert ckpt.find_weights(tmp_path) == tmp_path / "best.safetensors"


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16 (AVX-512 BF16 / AMX)")
def test_bf16_autocast_with_channels_last_trains_on_cpu(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 1))
    before = state_of(model)
    seen = {}

    def loss_fn(model: nn.Module, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        out = model(batch[0])
        seen["dtype"] = out.dtype
        seen["channels_last"] = model[0].weight.is_contiguous(memory_format=torch.channels_last)
        return {"loss": (out.float() - batch[1]).pow(2).mean()}

    images = torch.randn(8, 3, 16, 16)
    loader = make_loader(TensorDataset(images, images.mean(1, keepdim=True)), 4)
    trainer, result = train(tmp_path, config(precision="bf16", epochs=1), model, loader=loader, loss_fn=loss_fn)
    assert trainer.precision.dtype == torch.bfloat16 and trainer.precision.channels_last
    assert seen == {"dtype": torch.bfloat16, "channels_last": True}
    assert math.isfinite(result["train_loss"])
    assert not torch.equal(before["0.weight"], model[0].weight.detach())
    assert model[0].weight.dtype == torch.float32  # master weights stay fp32


def test_max_minutes_stops_after_the_step_saves_and_evaluates(tmp_path: Path) -> None:
    evaluations = []
    evaluate = lambda model: evaluations.append(1) or {"score": 1.0}  # noqa: E731
    cfg = config(epochs=3, max_minutes=1e-9, val_every=2)
    trainer, result = train(tmp_path, cfg, evaluate=evaluate)
    assert result["stopped_early"] and result["step"] == 1 and result["epoch"] == 0
    assert evaluations == [1]  # the final evaluation, though epoch 1 is not a val epoch
    state = ckpt.load_state(tmp_path / "last_state.pt")
    assert (state["epoch"], state["epoch_step"], state["global_step"]) == (0, 1, 1)
    resumed, result = train(tmp_path, replace(cfg, max_minutes=0.0), resume=True, evaluate=evaluate)
    assert result["step"] == 24 and result["epoch"] == 3 and not result["stopped_early"]


@pytest.mark.parametrize("by_clock", [True, False])
def test_schedule_follows_the_clock_to_the_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    by_clock: bool) -> None:
    """80 steps planned (4 of warm-up), 7 s each against a one-minute budget: the run stops
    after 9. By the clock, warm-up and cosine decay end there too; by steps alone the
    learning rate would still be near its peak."""
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    def slow_loss(model: nn.Module, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        clock[0] += 7.0
        return mse_loss(model, batch)

    cfg = config(epochs=10, log_every=1, max_minutes=1.0, schedule_by_clock=by_clock)
    trainer, result = train(tmp_path, cfg, loss_fn=slow_loss)
    lrs = [r["lr"] / cfg.lr for r in read_metrics(tmp_path) if r["split"] == "train"]
    assert result["stopped_early"] and result["step"] == len(lrs) == 9
    by_steps = [lr_factor(k, 80, 4, "cosine") for k in range(9)]
    if not by_clock:
        assert lrs == pytest.approx(by_steps)
        assert trainer.optimizer.param_groups[0]["lr"] > 0.9 * cfg.lr
        return
    clock_position = [int(7.0 * k / 60.0 * 80) for k in range(9)]  # steps done x share of the budget spent
    assert lrs == pytest.approx([lr_factor(max(k, p), 80, 4, "cosine") for k, p in enumerate(clock_position)])
    assert lrs[0] == 0.25 and lrs[1] > 0.95 and lrs[-1] < 0.02  # warm-up over after one step, decayed by the end
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0

    resumed, result = train(tmp_path, cfg, loss_fn=slow_loss, resume=True)  # a new budget for the 71 steps left
    lrs = [r["lr"] / cfg.lr for r in read_metrics(tmp_path) if r["split"] == "train"][9:]
    assert result["step"] == 18 and lrs[0] == pytest.approx(lr_factor(9, 80, 4, "cosine"))
    assert resumed.optimizer.param_groups[0]["lr"] == 0.0


def test_loss_fn_without_total_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="'loss'"):
        train(tmp_path, config(epochs=1), loss_fn=lambda model, batch: {"mse": model(batch[0]).mean()})


def test_to_device_walks_containers_and_dataclasses() -> None:
    @dataclass(frozen=True)
    class Batch:
        image: torch.Tensor
        name: str

    Pair = namedtuple("Pair", "a b")
    batch = {"x": torch.ones(2), "list": [torch.zeros(1), 3], "pair": Pair(torch.ones(1), "b"),
             "sample": Batch(torch.ones(1), "s")}
    moved = to_device(batch, torch.device("meta"))
    assert moved["x"].is_meta and moved["list"][0].is_meta and moved["list"][1] == 3
    assert isinstance(moved["pair"], Pair) and moved["pair"].a.is_meta
    assert isinstance(moved["sample"], Batch) and moved["sample"].image.is_meta and moved["sample"].name == "s"
    assert not batch["sample"].image.is_meta  # the input is not changed


def test_fp16_trains_with_a_grad_scaler_and_saves_its_state(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    images = torch.randn(8, 3, 8, 8)
    loader = make_loader(TensorDataset(images, images.mean(1, keepdim=True)), 4)

    def loss_fn(model: nn.Module, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": (model(batch[0]).float() - batch[1]).pow(2).mean()}

    trainer, result = train(tmp_path, config(precision="fp16", epochs=1), model, loader=loader, loss_fn=loss_fn)
    assert trainer.precision.use_scaler and trainer.scaler.is_enabled()
    assert math.isfinite(result["train_loss"])
    assert ckpt.load_state(tmp_path / "last_state.pt")["scaler"]["scale"] > 0


def test_non_finite_loss_stops_with_a_clear_error(tmp_path: Path) -> None:
    nan_loss = lambda model, batch: {"loss": model(batch[0]).mean() * float("nan")}  # noqa: E731
    with pytest.raises(FloatingPointError, match="non-finite loss at epoch 1, step 2"):
        train(tmp_path, config(epochs=1), loss_fn=nan_loss)



def test_compiled_training_learns_like_eager_and_saves_plain_weights(tmp_path: Path) -> None:
    """``train.compile``: the same loss curve as eager (same init, same batches) and weights
    files without torch.compile's prefixes."""
    runs = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        trainer, result = train(tmp_path / str(compiled), config(epochs=2, lr=3e-2, grad_clip=0.0, compile=compiled))
        runs[compiled] = [r["loss"] for r in read_metrics(tmp_path / str(compiled)) if r["split"] == "train"]
        assert hasattr(trainer.model, "_orig_mod") == compiled
    assert runs[True] == pytest.approx(runs[False], rel=1e-3)
    names = set(ckpt.read_weights(tmp_path / "True" / ckpt.LAST_WEIGHTS))
    assert names == set(ckpt.read_weights(tmp_path / "False" / ckpt.LAST_WEIGHTS))
    assert not any("_orig_mod" in name for name in names)


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_fused_optimizer_makes_the_loop_implementations_updates(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 2, 1))
    reference = [p.detach().clone().requires_grad_() for p in model.parameters()]
    fused = build_optimizer(default_param_groups(model, 1e-2), config(optimizer=name, lr=1e-2, weight_decay=1e-2))
    assert all(group["fused"] for group in fused.param_groups)
    loop_class = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[name]
    groups = default_param_groups(model, 1e-2)
    index = {id(p): i for i, p in enumerate(model.parameters())}
    loop = loop_class([g | {"params": [reference[index[id(p)]] for p in g["params"]]} for g in groups],
                      lr=1e-2, weight_decay=1e-2, foreach=False)
    for step in range(5):
        grads = [torch.randn_like(p) for p in reference]
        for p, r, g in zip(model.parameters(), reference, grads):
            p.grad, r.grad = g.clone(), g.clone()
        fused.step()
        loop.step()
    for p, r in zip(model.parameters(), reference):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-5, atol=1e-6)
