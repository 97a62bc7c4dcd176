"""What an export costs in accuracy: each head's metrics before and after, on one dataset."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch.utils.data import DataLoader

from ..mcn.data import EvalDataset, check_categories, collate_eval, open_coco
from ..mcn.evaluate import evaluate
from ..mcn.predictor import Predictor

HEAD_METRICS = {"det": ("det_ap", "det_ap50"), "seg": ("seg_iou", "seg_miou"), "pose": ("pose_ap", "pose_ap50")}


def compare_accuracy(predictors: Mapping[str, Predictor], data: str | Path, batch_size: int = 8) -> dict:
    """The metrics of each of ``predictors`` (``{"fp32": ..., "int8": ...}``, in that order:
    before, after) on the data folder ``data`` (annotations.json, images/), whose categories
    must be the model's. Returns ``{"data", "images", "skipped", "metrics": {name: {...}},
    "heads": {task: {metric: {name: value, ..., "change": after - before}}}}``."""
    names = list(predictors)
    first = predictors[names[0]]
    dataset = open_coco(Path(data))
    check_categories(dataset, first.info)
    metrics = {}
    for name, predictor in predictors.items():
        loader = DataLoader(EvalDataset(dataset, first.info.config.data.image_size), batch_size=batch_size,
                            collate_fn=collate_eval)
        metrics[name] = evaluate(predictor, loader, dataset.coco, progress=True, total=len(loader))
    heads = {}
    for task, keys in HEAD_METRICS.items():
        if task in first.tasks:
            heads[task] = {key: {**{name: metrics[name][key] for name in names},
                                 "change": metrics[names[-1]][key] - metrics[names[0]][key]} for key in keys}
    return {"data": str(data), "images": len(dataset) - len(dataset.skipped), "skipped": len(dataset.skipped),
            "metrics": metrics, "heads": heads}


def format_accuracy(result: dict) -> str:
    """A table of ``compare_accuracy``'s result per head, in percent."""
    names = list(result["metrics"])
    lines = [f"accuracy on {result['data']} ({result['images']} images"
             + (f", {result['skipped']} skipped" if result["skipped"] else "") + "), in percent:",
             f"  {'head':<6}{'metric':<11}" + "".join(f"{name:>9}" for name in names) + f"{'change':>9}"]
    for task, metrics in result["heads"].items():
        for key, values in metrics.items():
            lines.append(f"  {task:<6}{key:<11}" + "".join(f"{100 * values[name]:9.1f}" for name in names)
                         + f"{100 * values['change']:+9.1f}")
    return "\n".join(lines)
