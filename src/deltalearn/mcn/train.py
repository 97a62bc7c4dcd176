"""``deltalearn mcn train``: a Multitask CenterNet on a COCO dataset with the shared engine."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..config import ConfigError, save_config
from ..data.coco import CocoDataset
from ..data.io import atomic_write_text
from ..data.keypoints import KEYPOINT_NAMES, SKELETON
from ..engine.distributed import make_loader, print0, unwrap_model
from ..engine.precision import Precision
from ..engine.trainer import Trainer
from .backbones import normalize_images
from .config import MCNConfig
from .data import EvalDataset, TrainBatch, TrainCollate, collate_eval, training_transforms
from .distill import Distiller
from .evaluate import evaluate
from .predictor import TorchPredictor
from .sources import SourceMix
from .warm_start import is_mae_checkpoint, warm_start
from .weights import ModelInfo, build_model, person_label_of

EVAL_BATCH = 8  # images per evaluation batch
INIT_RECORD = "init.json"  # in a run folder: the --init source and what it loaded


def model_info(config: MCNConfig, dataset: CocoDataset | SourceMix) -> ModelInfo:
    """The categories of ``dataset`` and the config, as every weights file will carry them."""
    keypoint_labels = [label for label, cat_id in enumerate(dataset.category_ids)
                       if cat_id in dataset.keypoint_category_ids]
    if "pose" in config.model.tasks and not keypoint_labels:
        raise ValueError(f"{dataset.ann_file}: model.tasks has pose but no selected category has keypoints")
    return ModelInfo(
        config=config,
        category_ids=list(dataset.category_ids),
        category_names=list(dataset.category_names),
        person_label=person_label_of(dataset.category_names, keypoint_labels[0] if keypoint_labels else None),
        keypoint_names=list(dataset.keypoint_names or KEYPOINT_NAMES),
        skeleton=[list(limb) for limb in (dataset.skeleton or SKELETON)],
    )


def train(config: MCNConfig, train_set: CocoDataset | SourceMix, run_dir: str | Path, val_set: CocoDataset | None = None,
          resume: bool = False, device: torch.device | str | None = None,
          init: str | Path | None = None) -> dict[str, Any]:
    """Train into ``run_dir`` (config.yaml, weights, metrics.jsonl); returns the final metrics.

    init: a run folder or weights file whose tensors of matching name and shape the new
    network starts from (see :mod:`.warm_start`); the metrics then say what was loaded, and
    ``run_dir/init.json`` records it. With ``config.loss.distill`` it also stays as the teacher
    of the tasks each sample is not labelled for (:mod:`.distill`), a resumed run's too.
    """
    if init is not None and resume:
        raise ConfigError("--init and --resume exclude each other: resume continues the run's own weights")
    run_dir = Path(run_dir)
    info = model_info(config, train_set)
    model = build_model(info, backbone_weights=not resume)  # a resumed run loads its own weights
    report = None
    if init is not None:
        report = warm_start(model, init)
        print0(report.describe())
    distiller = None
    if config.loss.distill > 0 and init is not None and is_mae_checkpoint(init):
        raise ConfigError(f"loss.distill needs --init to be a trained MCN to keep tasks of; {init} is an MAE")
    if config.loss.distill > 0:
        teacher = report.source if report is not None else _recorded_init(run_dir) if resume else None
        if teacher is None:
            raise ConfigError("loss.distill needs --init: the trained network whose tasks the new one keeps")
        distiller = Distiller.from_weights(teacher, model, info, config.loss.distill)
        print0(f"distilling {', '.join(distiller.tasks)} from {teacher} (Learning without Forgetting, "
               f"weight {config.loss.distill}) on the samples not labelled for them")
    labelled = train_set.labelled_tasks if isinstance(train_set, SourceMix) else None
    if distiller is not None and labelled is not None:  # open_sources let the teacher cover them
        untaught = [task for task in config.model.tasks if task not in labelled | set(distiller.tasks)]
        if untaught:
            raise ConfigError(f"model.tasks {list(config.model.tasks)}: no source of data.sources labels {untaught}, "
                              "and the --init network cannot teach them")
    train_set.transforms = training_transforms(config.data, info.keypoint_names)
    train_set.cache_samples = config.data.cache_samples
    workers = config.data.workers
    loader = make_loader(
        train_set, config.train.batch_size, shuffle=True, seed=config.train.seed, drop_last=len(train_set) > config.train.batch_size,
        weights=train_set.sample_weights if isinstance(train_set, SourceMix) else None,
        num_workers=workers, collate_fn=TrainCollate(model.encode), persistent_workers=workers > 0,
    )
    skipped = {"count": 0}
    trainer: Trainer

    def loss_fn(network: nn.Module, batch: TrainBatch | None) -> dict[str, torch.Tensor]:
        if batch is None:  # every sample of the batch was bad: a step without gradient signal
            skipped["count"] += config.train.batch_size
            zero = sum(p.sum() * 0.0 for p in network.parameters())
            return {"loss": zero}
        skipped["count"] += batch.skipped
        images = normalize_images(batch.images)
        if trainer.precision.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        outputs = {key: value.float() for key, value in network(images).items()}
        terms = unwrap_model(network).loss(outputs, batch.targets)
        if distiller is not None:
            taught = distiller.loss(unwrap_model(network), images, outputs, batch.targets)
            terms |= taught
            terms["loss"] = terms["loss"] + sum(taught.values())
        for task in config.model.tasks:  # how many samples of the batch each task learned from
            terms[f"samples.{task}"] = batch.targets[f"{task}.labelled"].sum()
        return terms

    evaluate_fn = None
    if val_set is not None:
        evaluate_fn = _validation(val_set, config, info, lambda: trainer.precision)

    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / "config.yaml")
    if report is not None:
        atomic_write_text(run_dir / INIT_RECORD, json.dumps(report.metrics() | report.by_part_counts(), indent=2) + "\n")
    trainer = Trainer(model, loss_fn, loader, config.train, run_dir, evaluate=evaluate_fn, resume=resume,
                      metadata=info.metadata())
    metrics = trainer.fit()
    if skipped["count"] or train_set.skipped:
        warnings.warn(f"{train_set.ann_file}: skipped {max(skipped['count'], len(train_set.skipped))} bad "
                      "training sample(s) (see the warnings above)", stacklevel=2)
    metrics["skipped_samples"] = max(skipped["count"], len(train_set.skipped))
    if report is not None:
        metrics |= report.metrics()
    return metrics


def _recorded_init(run_dir: Path) -> Path:
    """The --init source that ``run_dir``'s run started from (its init.json)."""
    record = run_dir / INIT_RECORD
    try:
        return Path(json.loads(record.read_text())["init"])
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(f"{record}: cannot read the --init source that loss.distill resumes with ({error})") from None


def _validation(val_set: CocoDataset, config: MCNConfig, info: ModelInfo,
                precision: Callable[[], Precision]) -> Callable[[nn.Module], dict[str, float]]:
    """The trainer's ``evaluate``: the metrics of the enabled tasks on ``val_set``."""
    loader = DataLoader(EvalDataset(val_set, config.data.image_size), batch_size=EVAL_BATCH,
                        num_workers=min(config.data.workers, 1), collate_fn=collate_eval)

    def evaluate_fn(network: nn.Module) -> dict[str, float]:
        return evaluate(TorchPredictor(network, info, precision=precision()), loader, val_set.coco)

    return evaluate_fn
