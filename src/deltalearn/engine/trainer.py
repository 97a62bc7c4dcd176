"""The training loop shared by every system: optimizer, schedule, precision, logs, checkpoints.

The model, its loss and its evaluation come in as parts::

    trainer = Trainer(model, loss_fn, make_loader(dataset, 16), config.train, "runs/a", evaluate=evaluate)
    metrics = trainer.fit()

``loss_fn(model, batch) -> {"loss": total, "heatmap": ..., ...}``: "loss" is backpropagated,
every entry is logged by name. ``evaluate(model) -> {"det_ap": ..., ...}`` runs on rank 0
in eval mode under ``torch.no_grad()`` every ``val_every`` epochs and at the end (it may use
``autocast(trainer.precision)`` itself). The same code runs in one CPU process and under
``torchrun`` on many GPUs.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from ..config import to_dict
from . import checkpoint as ckpt
from .config import TrainConfig
from .distributed import (
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_value,
    init_distributed,
    process_device,
    set_loader_epoch,
    unwrap_model,
    wrap_model,
)
from .curves import CURVES_FILE, plot_curves
from .freeze import freeze, hold_norms
from .metrics_log import MetricsLog, read_metrics
from .precision import autocast, grad_scaler, prepare_model, resolve_precision

_END = object()  # marks the end of the loader's batches
# settings a resumed run may change quietly
_FREE_ON_RESUME = ("max_minutes", "schedule_by_clock", "log_every", "val_every", "compile")
LossFn = Callable[[nn.Module, Any], dict[str, torch.Tensor]]
EvaluateFn = Callable[[nn.Module], dict[str, float]]


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor moved to ``device``, through dicts, lists, tuples and dataclasses."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, dict):
        return type(batch)((k, to_device(v, device)) for k, v in batch.items())
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        moved = copy.copy(batch)
        for f in dataclasses.fields(batch):
            object.__setattr__(moved, f.name, to_device(getattr(batch, f.name), device))
        return moved
    return batch


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: decay on weights, none on biases, norms (ndim <= 1) and the names
    listed by ``model.no_weight_decay()`` (timm's convention, e.g. pos_embed, cls_token)."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(param_groups: Iterable[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (decoupled decay) or Adam at ``config.lr``; a group may set its own lr and weight_decay.

    The fused implementation runs where every parameter lives on the CPU or a CUDA device: one
    kernel over all tensors instead of a loop of small ops (ResNet-18's AdamW step: 9 ms
    against 34 ms on 2 Xeon cores), with the same update up to float rounding.
    """
    groups = [g | {"params": [p for p in g["params"] if p.requires_grad]} for g in param_groups]
    groups = [g for g in groups if g["params"]]
    devices = {p.device.type for g in groups for p in g["params"]}
    fused = {"fused": True} if devices <= {"cpu", "cuda"} else {}
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, **fused)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay, **fused)
    raise ValueError(f"optimizer {config.optimizer!r} is not one of adamw, adam")


def lr_factor(iteration: int, total_iters: int, warmup_iters: int, schedule: str) -> float:
    """The learning-rate multiplier for the step after ``iteration`` completed steps.

    Linear warm-up from 1/warmup_iters to 1 over ``warmup_iters`` steps, then
    cosine: half a cosine from 1 to 0 at ``total_iters``; step: 0.1 from 2/3 and 0.01 from
    8/9 of ``total_iters``; constant: 1.
    """
    if iteration < warmup_iters:
        return (iteration + 1) / warmup_iters
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 0.1 ** sum(iteration >= total_iters * m for m in (2 / 3, 8 / 9))
    if schedule == "cosine":
        progress = min(1.0, (iteration - warmup_iters) / max(1, total_iters - warmup_iters))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"schedule {schedule!r} is not one of cosine, step, constant")


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, iters_per_epoch: int,
                    least_position: Callable[[], int] | None = None) -> LambdaLR:
    """Per-iteration LambdaLR of :func:`lr_factor` over ``config.epochs`` epochs. With
    ``least_position``, the schedule stands at no fewer steps than it returns (the clock's
    position, see :class:`TimeBudget`), else at the steps done."""
    total = config.epochs * iters_per_epoch
    warmup = round(config.warmup_epochs * iters_per_epoch)
    lr_factor(0, total, warmup, config.schedule)  # fail now on an unknown schedule name
    least = least_position or (lambda: 0)
    # a plain function (not a callable object): its settings come from the config, not from a checkpoint
    return LambdaLR(optimizer, lambda it: lr_factor(max(it, least()), total, warmup, config.schedule))


class TimeBudget:
    """The wall time a ``fit`` may take (``max_minutes``) and the schedule position it implies.

    Rank 0's clock decides for all: after each step its share of the budget spent is
    broadcast (the one collective per step that the common stop decision needs anyway), so
    every rank stops after the same step and sets the same learning rate. A resumed run gets
    a new budget for the planned steps it has left.
    """

    def __init__(self, minutes: float, total_steps: int, device: torch.device) -> None:
        self.seconds = 60 * minutes
        self.total_steps = total_steps  # steps the schedule plans
        self.device = device
        self.started = 0.0  # time.monotonic() at start()
        self.first_step = 0  # steps done when the budget started (a resumed run's)
        self.spent = 0.0  # share of the budget spent at the last check

    def start(self, step: int) -> None:
        """Start the budget now, at ``step`` steps done."""
        self.started, self.first_step, self.spent = time.monotonic(), step, 0.0

    def check(self) -> bool:
        """After a step: update the share spent; whether the budget is used up."""
        self.spent = broadcast_value((time.monotonic() - self.started) / self.seconds, self.device)
        return self.spent > 1.0

    def position(self) -> int:
        """Where the clock puts the schedule: the steps done at the start plus the spent share
        of the planned steps left, so that the schedule ends with the budget."""
        left = max(0, self.total_steps - self.first_step)
        return self.first_step + min(left, int(self.spent * left))


def metric_goal(best_metric: str) -> tuple[str, bool]:
    """``"det_ap"`` -> (det_ap, higher is better); ``"-val_loss"`` -> (val_loss, lower is better)."""
    return (best_metric[1:], False) if best_metric.startswith("-") else (best_metric, True)


class _Mean:
    """Running means of detached loss terms, kept on the device (one sync when read)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0) + value
        self.count += 1

    def read(self, device: torch.device) -> dict[str, float]:
        """Means over the added steps, averaged over all processes; then start anew."""
        means = {k: float(v) / self.count for k, v in self.sums.items()} if self.count else {}
        self.sums, self.count = {}, 0
        return all_reduce_mean(means, device)


class Trainer:
    """Trains ``model`` with ``loss_fn`` on ``train_loader`` as ``config`` says, into ``run_dir``.

    param_groups: optimizer groups (dicts with "params", optionally "lr", "weight_decay");
    default: no weight decay on biases and norms. device: default CUDA when present, else
    CPU. ``config.freeze`` names parameter prefixes kept fixed (see :mod:`.freeze`). resume:
    continue from ``run_dir/last_state.pt``. iters_per_epoch: steps per epoch
    (default ``len(train_loader)``; required for loaders without a length); an epoch ends
    after that many steps or when the loader runs out.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train_loader: Iterable,
        config: TrainConfig,
        run_dir: str | Path,
        evaluate: EvaluateFn | None = None,
        param_groups: list[dict[str, Any]] | None = None,
        device: torch.device | str | None = None,
        resume: bool = False,
        iters_per_epoch: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.metadata = dict(metadata or {})  # written into every weights file, e.g. the model's config
        self.run_dir = Path(run_dir)
        self.device = process_device(device)
        self.dist = init_distributed(self.device)
        seed_everything(config.seed + self.dist.rank)
        self.precision = resolve_precision(config.precision, self.device, model)
        model = prepare_model(model, self.precision)
        self.frozen_norms = freeze(model, config.freeze)  # before DDP and the optimizer see the parameters
        self.model = wrap_model(model, self.device)
        if config.compile:
            self.model = torch.compile(self.model)
        self.loss_fn = loss_fn
        self.train_loader = train_loader
        self.evaluate_fn = evaluate
        self.iters_per_epoch = iters_per_epoch or _loader_length(train_loader)
        groups = param_groups if param_groups is not None else default_param_groups(model, config.weight_decay)
        self.optimizer = build_optimizer(groups, config)
        total_steps = config.epochs * self.iters_per_epoch
        self.budget = TimeBudget(config.max_minutes, total_steps, self.device) if config.max_minutes > 0 else None
        clock = self.budget.position if self.budget is not None and config.schedule_by_clock else None
        self.scheduler = build_scheduler(self.optimizer, config, self.iters_per_epoch, clock)
        self.scaler = grad_scaler(self.precision)
        self.epoch = 0  # completed epochs
        self.epoch_step = 0  # steps done in the current epoch (non-zero only after a time stop)
        self.global_step = 0
        self.best: float | None = None
        self.resumed = resume
        if resume:
            self._resume()

    # ---- the loop ----------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Train to ``config.epochs`` (or the time budget); return the final metrics.

        The result holds epoch, step, stopped_early, the last epoch's mean train terms as
        ``train_<name>`` and, on rank 0, the last evaluation's metrics.
        """
        log = MetricsLog(self.run_dir, enabled=self.dist.is_main,
                         resume_step=self.global_step if self.resumed else None)
        self._start_budget()
        train: dict[str, float] = {}
        val: dict[str, float] = {}
        stopped = False
        try:
            if self.epoch >= self.config.epochs:  # a finished run, resumed: evaluate only
                val = self._evaluate(log, self.epoch)
            while self.epoch < self.config.epochs and not stopped:
                number = self.epoch + 1
                train, stopped = self._train_epoch(log, number)
                if self.epoch_step >= self.iters_per_epoch or not stopped:
                    self.epoch, self.epoch_step = self.epoch + 1, 0
                final = stopped or self.epoch >= self.config.epochs
                every = self.config.val_every
                if every > 0 and (number % every == 0 or final):
                    val = self._evaluate(log, number)
                self._save_checkpoint(val)
        finally:
            log.close()
            self._draw_curves()
        barrier()
        result = {"epoch": self.epoch, "step": self.global_step, "stopped_early": stopped}
        return result | {f"train_{k}": v for k, v in train.items()} | val

    def _start_budget(self) -> None:
        """Start the time budget, if any; when the schedule follows the clock, set the rate of the
        step where this fit starts (a resumed run's saved rate is where its last budget ended)."""
        if self.budget is None:
            return
        self.budget.start(self.global_step)
        if self.config.schedule_by_clock:
            for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                           self.scheduler.lr_lambdas):
                group["lr"] = base * factor(self.scheduler.last_epoch)

    def _train_mode(self) -> None:
        """Training mode, but frozen norm layers stay in eval mode."""
        self.model.train()
        hold_norms(self.frozen_norms)

    def _train_epoch(self, log: MetricsLog, number: int) -> tuple[dict[str, float], bool]:
        """One epoch (or its rest, after a resumed time stop); returns (mean terms, stopped)."""
        self._train_mode()
        set_loader_epoch(self.train_loader, self.epoch)
        batches = iter(self.train_loader)
        for _ in range(self.epoch_step):  # resumed after a time stop: skip the steps done
            next(batches)
        window, whole = _Mean(), _Mean()
        bar = tqdm(total=self.iters_per_epoch, initial=self.epoch_step, desc=f"epoch {number}/{self.config.epochs}",
                   disable=not self.dist.is_main, dynamic_ncols=True, leave=False)
        stopped = False
        self._window_clock = (time.monotonic(), self.global_step)  # steps per second of each log line
        with bar:
            while self.epoch_step < self.iters_per_epoch and not stopped:
                batch = next(batches, _END)
                if batch is _END:
                    break
                lr = self.optimizer.param_groups[0]["lr"]
                terms = self._step(batch)
                stopped = self.budget is not None and self.budget.check()
                self.scheduler.step()  # after the check: the clock's position counts for the next step
                window.add(terms)
                whole.add(terms)
                bar.update()
                if self.global_step % max(1, self.config.log_every) == 0:
                    self._log_train(log, bar, number, lr, window.read(self.device))
            if window.count:  # the steps since the last line, so every epoch ends with one
                self._log_train(log, bar, number, lr, window.read(self.device))
        return whole.read(self.device), stopped

    def _step(self, batch: Any) -> dict[str, torch.Tensor]:
        """Forward, backward, clip and optimizer step (the loop steps the schedule); returns the
        detached terms."""
        batch = to_device(batch, self.device)
        with autocast(self.precision):
            terms = self.loss_fn(self.model, batch)
        if "loss" not in terms:
            raise KeyError(f"loss_fn must return a dict with the total under 'loss'; got keys {sorted(terms)}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["loss"]).backward()
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        self.epoch_step += 1
        return {k: torch.as_tensor(v).detach().float() for k, v in terms.items()}

    def _log_train(self, log: MetricsLog, bar: tqdm, number: int, lr: float, means: dict[str, float]) -> None:
        if not math.isfinite(means["loss"]):
            raise FloatingPointError(f"non-finite loss at epoch {number}, step {self.global_step}: {means}")
        started, first_step = self._window_clock
        now = time.monotonic()
        rate = (self.global_step - first_step) / max(now - started, 1e-9)
        self._window_clock = (now, self.global_step)
        log.log({"split": "train", "epoch": number, "step": self.global_step, "lr": lr, **means,
                 "steps_per_s": round(rate, 3)})
        bar.set_postfix(loss=f"{means['loss']:.4g}", lr=f"{lr:.3g}")

    def _evaluate(self, log: MetricsLog, number: int) -> dict[str, float]:
        """Run ``evaluate`` on rank 0 (the other ranks wait); log its metrics as split "val"."""
        metrics: dict[str, float] = {}
        if self.evaluate_fn is not None and self.dist.is_main:
            model = unwrap_model(self.model)
            model.eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in self.evaluate_fn(model).items()}
            self._train_mode()
            log.log({"split": "val", "epoch": number, "step": self.global_step, **metrics})
            self._draw_curves()
        barrier()
        return metrics

    def _draw_curves(self) -> None:
        """Redraw run_dir/curves.png from metrics.jsonl (rank 0); a failure only warns."""
        if not self.dist.is_main:
            return
        try:
            plot_curves(read_metrics(self.run_dir), self.run_dir / CURVES_FILE, title=str(self.run_dir))
        except (OSError, ValueError) as error:
            warnings.warn(f"{self.run_dir / CURVES_FILE}: not drawn ({error})", stacklevel=2)

    # ---- checkpoints -------------------------------------------------------------------

    def _save_checkpoint(self, metrics: dict[str, float]) -> None:
        """last.safetensors + last_state.pt, and best.safetensors when the metric improved (rank 0)."""
        rng = all_gather_objects(ckpt.rng_state(self.device))  # every rank's generators
        if self.dist.is_main:
            position = {"epoch": str(self.epoch), "global_step": str(self.global_step)}
            improved = self._improved(metrics)
            ckpt.save_weights(self.model, self.run_dir / ckpt.LAST_WEIGHTS, metadata={**self.metadata, **position})
            ckpt.save_state(self._state(rng), self.run_dir / ckpt.LAST_STATE)
            if improved:
                ckpt.save_weights(self.model, self.run_dir / ckpt.BEST_WEIGHTS, metadata={**self.metadata, **position})
        barrier()

    def _improved(self, metrics: dict[str, float]) -> bool:
        """Whether ``metrics`` beat the best so far on ``config.best_metric`` (updates it)."""
        if not self.config.best_metric or not metrics:
            return False
        name, higher = metric_goal(self.config.best_metric)
        if name not in metrics:
            warnings.warn(f"best_metric '{name}' is not among the evaluated metrics {sorted(metrics)}", stacklevel=2)
            return False
        value = metrics[name]
        if self.best is None or (value > self.best if higher else value < self.best):
            self.best = value
            return True
        return False

    def _state(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "global_step": self.global_step,
            "best": self.best,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng,
            "config": to_dict(self.config),
        }

    def _resume(self) -> None:
        """Restore weights, optimizer, schedule, scaler, counters and generators from run_dir."""
        weights, state_file = self.run_dir / ckpt.LAST_WEIGHTS, self.run_dir / ckpt.LAST_STATE
        if not (weights.is_file() and state_file.is_file()):
            raise ckpt.CheckpointError(
                f"{self.run_dir}: resume=True, but the folder holds no checkpoint "
                f"({ckpt.LAST_WEIGHTS} and {ckpt.LAST_STATE}); start the run without resume"
            )
        state = ckpt.load_state(state_file)
        saved_step = ckpt.weights_metadata(weights).get("global_step")
        if saved_step is not None and int(saved_step) != state["global_step"]:
            raise ckpt.CheckpointError(
                f"{self.run_dir}: {ckpt.LAST_WEIGHTS} (step {saved_step}) and {ckpt.LAST_STATE} "
                f"(step {state['global_step']}) disagree; the run was stopped while saving"
            )
        changed = [k for k, v in to_dict(self.config).items()
                   if k not in _FREE_ON_RESUME and state["config"].get(k) != v]
        if changed:
            warnings.warn(f"resuming with changed train settings: {', '.join(changed)}", stacklevel=3)
        ckpt.load_weights(self.model, weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.epoch_step = state["epoch"], state["epoch_step"]
        self.global_step, self.best = state["global_step"], state["best"]
        if len(state["rng"]) == self.dist.world_size:
            ckpt.set_rng_state(state["rng"][self.dist.rank], self.device)
        else:
            warnings.warn("resuming with another number of processes: generators are re-seeded", stacklevel=3)
            seed_everything(self.config.seed + self.dist.rank + 1000 * self.global_step)


def _loader_length(loader: Iterable) -> int:
    try:
        length = len(loader)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError("train_loader has no length (an IterableDataset?); pass iters_per_epoch") from None
    if length == 0:
        raise ValueError("train_loader is empty: no training batches (dataset smaller than one batch with drop_last?)")
    return length
