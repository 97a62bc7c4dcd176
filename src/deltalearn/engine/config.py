"""Training settings shared by every system (MCN, MAE)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class TrainConfig:
    epochs: int = 10  # passes over the training set
    batch_size: int = 16  # images per step (per process under torchrun)
    lr: float = 1e-3  # peak learning rate after warm-up
    weight_decay: float = 1e-4  # AdamW decoupled weight decay (not on norms and biases)
    optimizer: Literal["adamw", "adam"] = "adamw"
    schedule: Literal["cosine", "step", "constant"] = "cosine"  # decay after warm-up, per iteration
    warmup_epochs: float = 1.0  # linear warm-up length, may be fractional
    grad_clip: float = 10.0  # max gradient norm; 0 disables clipping
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where the device has it
    seed: int = 0  # seeds python, numpy and torch (each rank adds its rank)
    val_every: int = 1  # validate every N epochs; 0: never
    best_metric: str = ""  # metric that picks best.safetensors, e.g. det_ap; empty: none
    max_minutes: float = 0.0  # stop after this wall time (the demo's budget); 0: no limit
    schedule_by_clock: bool = True  # with max_minutes: the lr schedule keeps pace with the clock, ends by the deadline
    log_every: int = 20  # steps between log lines in metrics.jsonl
    # torch.compile the model for training (inductor; on CPU it needs a C++ compiler); the
    # first steps then include the compilation. Checkpoints are the same either way
    compile: bool = False
    # parameter-name prefixes kept fixed, e.g. [backbone] or [backbone, neck] or [tasks.det]:
    # no gradient, no optimizer step, their BatchNorm statistics frozen too
    freeze: list[str] = field(default_factory=list)
