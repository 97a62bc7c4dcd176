"""Run by test_distributed.py under torchrun: a few DDP steps of a tiny model on CPU (gloo).

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 tests/engine/ddp_worker.py OUT
Each rank writes OUT/rank{R}.pt with its initial and final weights and the sample indices it saw.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import TensorDataset

from deltalearn.engine.config import TrainConfig
from deltalearn.engine.distributed import cleanup, dist_info, make_loader, unwrap_model
from deltalearn.engine.trainer import Trainer


def main(out: Path) -> None:
    torch.set_num_threads(1)
    rank = dist_info().rank
    torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must start all from rank 0's
    model = nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 1))
    initial = {k: v.clone() for k, v in model.state_dict().items()}

    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    dataset = TensorDataset(x, x.sum(1, keepdim=True), torch.arange(32))
    seen: list[int] = []

    def loss_fn(model: nn.Module, batch: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs, targets, index = batch
        seen.extend(index.tolist())
        return {"loss": (model(inputs) - targets).pow(2).mean()}

    # a time budget that never runs out: rank 0's clock is still broadcast after every step
    config = TrainConfig(epochs=2, batch_size=4, lr=0.05, warmup_epochs=0.0, precision="fp32", log_every=1,
                         max_minutes=60.0)
    trainer = Trainer(model, loss_fn, make_loader(dataset, config.batch_size, seed=config.seed), config,
                      out / "run", device="cpu")
    result = trainer.fit()
    final = {k: v.detach().clone() for k, v in unwrap_model(trainer.model).state_dict().items()}
    torch.save({"initial": initial, "final": final, "seen": seen, "result": result,
                "ddp": isinstance(trainer.model, DistributedDataParallel)}, out / f"rank{rank}.pt")
    cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
