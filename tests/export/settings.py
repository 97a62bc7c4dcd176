"""The tiny seg+det+pose run that the export tests share."""

from pathlib import Path

import torch

from deltalearn.export.onnx import ExportGraph, example_images
from deltalearn.export.runtime import OnnxPredictor
from deltalearn.mcn.weights import load_model

SIZE = 64

TINY = ["model.backbone=resnet18", "model.neck_channels=32", "model.head_channels=32", f"data.image_size={SIZE}",
        "data.workers=0", "train.batch_size=8", "train.lr=3e-3", "train.warmup_epochs=0", "train.seed=0",
        "data.scale_range=[1.0,1.0]", "data.shift=0", "data.color_jitter=0", "train.val_every=0"]

SHAPES = [(2, SIZE, SIZE), (1, SIZE + 32, SIZE + 64)]  # (batch, height, width): two input sizes, two batches


def eager_and_onnx(run: Path, path: Path, shape: tuple[int, int, int]) -> tuple[dict, dict]:
    model, _ = load_model(run)
    images = example_images(*shape, seed=7)
    predictor = OnnxPredictor(path)
    with torch.no_grad():
        reference = ExportGraph(model, predictor.export.decoded).named_outputs(images)
    return reference, predictor.outputs(images)

