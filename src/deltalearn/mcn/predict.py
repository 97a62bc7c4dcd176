"""``deltalearn mcn predict``: COCO results and drawings for an image or a folder of images."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.errors import DataError, DataWarning
from ..data.io import IMAGE_SUFFIXES, atomic_write_text, list_images, load_rgb
from ..data.sample import Sample, empty_targets
from ..data.transforms import Letterbox
from ..viz.draw import MIN_DRAW_SIDE, draw_instances, palette, save_png
from .predictor import Predictor
from .weights import ModelInfo
from .tasks.base import boxes_to_original
from .tasks.segmentation import labels_to_original

BATCH = 8  # images per forward pass


def predict_images(predictor: Predictor, source: str | Path, out_dir: str | Path, score_threshold: float = 0.3) -> dict:
    """Write ``out_dir/predictions.json`` (COCO results; each entry also names its ``task`` and
    ``file_name``) and one drawing per image. A bad image in a folder is skipped and counted;
    a single bad image is an error. ``predictor``: a PyTorch :class:`Predictor` or any object
    with its ``info``, ``decode`` and ``coco_results`` (the ONNX runtime's)."""
    source, out_dir = Path(source), Path(out_dir)
    paths = list_images(source)
    if not paths:
        raise DataError(source, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    letterbox = Letterbox(predictor.info.config.data.image_size)
    entries: list[dict] = []
    skipped: list[str] = []
    batch: list[tuple[Sample, Sample]] = []
    for index, path in enumerate(tqdm(paths, desc="predict", unit="image", disable=len(paths) == 1)):
        try:
            pixels = torch.from_numpy(load_rgb(path)).permute(2, 0, 1).contiguous()
        except DataError as error:
            if source.is_file():
                raise
            warnings.warn(f"skipping image: {error}", DataWarning, stacklevel=2)
            skipped.append(str(path))
            continue
        name = str(path.relative_to(source)) if source.is_dir() else path.name
        original = Sample(image=pixels, **empty_targets(*pixels.shape[-2:]), image_id=index + 1, file_name=name,
                          orig_size=tuple(pixels.shape[-2:]))
        batch.append((original, letterbox(original)))
        if len(batch) == BATCH or index == len(paths) - 1:
            entries += _predict_batch(predictor, batch, out_dir, score_threshold)
            batch = []
    if batch:
        entries += _predict_batch(predictor, batch, out_dir, score_threshold)
    atomic_write_text(out_dir / "predictions.json", json.dumps(entries) + "\n")
    done = len(paths) - len(skipped)
    print(f"{done} image(s): {len(entries)} predictions written to {out_dir / 'predictions.json'}, drawings in {out_dir}"
          + (f"; skipped {len(skipped)} unreadable image(s)" if skipped else ""))
    return {"images": done, "predictions": len(entries), "skipped": skipped}


def _predict_batch(predictor: Predictor, batch: Sequence[tuple[Sample, Sample]], out_dir: Path,
                   score_threshold: float) -> list[dict]:
    samples = [boxed for _, boxed in batch]
    decoded = predictor.decode(samples)
    per_task = predictor.coco_results(decoded, samples, min_score=score_threshold)
    entries = []
    for task, results in per_task.items():
        names = {sample.image_id: sample.file_name for sample in samples}
        entries += [{**entry, "task": task, "file_name": names[entry["image_id"]]} for entry in results]
    for i, (original, sample) in enumerate(batch):
        drawing = draw_prediction(original.image, sample, {task: found[i] for task, found in decoded.items()},
                                  predictor.info, score_threshold)
        save_png(drawing, out_dir / Path(original.file_name).with_suffix(".png"))
    return entries


def draw_prediction(image: torch.Tensor, sample: Sample, found: dict, info: ModelInfo,
                    score_threshold: float, min_side: int = MIN_DRAW_SIDE,
                    track_ids: Sequence[int] | None = None) -> torch.Tensor:
    """Boxes with class and score, the semantic mask, skeletons; in original pixels, a small
    image upscaled to ``min_side`` (0: never). ``track_ids``: one identity per box kept at
    ``score_threshold`` (negative: none), drawn as ``#id`` before its class."""
    colours = palette(info.num_classes)
    boxes = labels = masks = keypoints = None
    box_colours: list[tuple[int, int, int]] = []
    mask_colours: list[tuple[int, int, int]] = []
    if "det" in found:
        det = found["det"]
        keep = det.scores >= score_threshold
        boxes = boxes_to_original(det.boxes[keep].float().cpu(), sample)
        labels = [f"{info.category_names[int(c)]} {float(s):.2f}" for c, s in zip(det.labels[keep], det.scores[keep])]
        if track_ids is not None:
            labels = [f"#{int(i)} {text}" if int(i) >= 0 else text for i, text in zip(track_ids, labels)]
        box_colours = [colours[int(c)] for c in det.labels[keep]]
    if "seg" in found:
        semantic = labels_to_original(found["seg"].labels.cpu(), sample)
        present = [v for v in semantic.unique().tolist() if 0 < v <= info.num_classes]
        masks = torch.stack([semantic == v for v in present]) if present else None
        mask_colours = [colours[v - 1] for v in present]
    if "pose" in found:
        pose = found["pose"]
        keep = pose.scores >= score_threshold
        xy = sample.to_original(pose.keypoints[keep].float().cpu())
        keypoints = torch.cat([xy, torch.full_like(xy[..., :1], 2.0)], dim=-1)
    return draw_instances(image, boxes, labels, masks, keypoints, colours=box_colours, mask_colours=mask_colours,
                          skeleton=[tuple(limb) for limb in info.skeleton], keypoint_names=info.keypoint_names,
                          min_side=min_side)
