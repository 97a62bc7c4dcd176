"""The Python API: a trained network in one object, images in, one result per image out.

``MCN`` predicts boxes, masks and keypoints (images, videos, streams); ``MAE`` segments the
foreground through an MAE's patch graph.

    from deltalearn import MCN
    model = MCN("runs/x/best.safetensors")       # a run folder, weights file or exported .onnx
    results = model.predict(["a.jpg", frame], batch=8)
    results[0].boxes, results[0].keypoints, results[0].semantic, results[0].to_coco(), results[0].plot()

Items are image paths, RGB arrays [H, W, 3] uint8 (numpy or torch), or PIL images. Results
are in the original image's pixels. Errors are the library's own, with the CLI's messages:
:class:`deltalearn.data.errors.DataError` for an unreadable image, CheckpointError for weights.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader
from tqdm import tqdm

from .config import from_dict
from .data.errors import DataError, DataWarning
from .data.io import IMAGE_SUFFIXES, atomic_write_text, list_images, load_rgb
from .data.sample import Sample, empty_targets
from .data.transforms import Letterbox
from .data.video import FrameSource, VideoSink
from .export.runtime import load_predictor
from .mae.pretrain import load_trained_mae
from .mae.segment import PatchGraphConfig, PatchGraphSegmenter, Segmentation, segmentation_figure
from .mcn.data import EvalDataset, check_categories, collate_eval, open_coco
from .mcn.evaluate import evaluate_details
from .mcn.predict import draw_prediction
from .mcn.predictor import Predictor
from .mcn.report import write_report
from .mcn.tasks.base import boxes_to_original
from .mcn.tasks.segmentation import labels_to_original
from .mcn.tracking import UNTRACKED, BoxTracker, match_identities
from .viz.draw import MIN_DRAW_SIDE, save_png

SCORE_THRESHOLD = 0.3  # boxes and persons below this score are left out (the CLI's default)
PREDICTIONS_JSONL = "predictions.jsonl"  # one line per frame of a video or stream
PREDICTIONS_JSON = "predictions.json"  # COCO results of still images
Item = str | os.PathLike | np.ndarray | torch.Tensor | Any  # a path, an RGB array or a PIL image


@dataclass
class MCNResult:
    """What the network found in one image, in that image's pixels. Tasks the network does not
    have give empty fields (``semantic`` None)."""

    image: np.ndarray  # [H, W, 3] uint8 RGB, the input
    boxes: np.ndarray  # [N, 4] float32 xyxy
    scores: np.ndarray  # [N] float32 in [0, 1], best first
    labels: np.ndarray  # [N] int64 class index into ``names``
    names: list[str]  # the network's category names
    keypoints: np.ndarray  # [P, 17, 3] float32 (x, y, score) of the persons found by pose
    person_boxes: np.ndarray  # [P, 4] float32 xyxy of those persons
    person_scores: np.ndarray  # [P] float32
    semantic: np.ndarray | None  # [H, W] int64: 0 background, label + 1 per class
    source: str = ""  # the item's path, or "" for an array
    frame: int | None = None  # the frame's index in a stream (MCN.stream)
    seconds: float = 0.0  # time the network and decoding took for this image
    track_ids: np.ndarray | None = None  # [N] identity of each box across frames (-1: none yet); with track
    person_track_ids: np.ndarray | None = None  # [P] identity of each pose person, from its box
    # (letterboxed sample, decoded results, predictor, score threshold): what plot and to_coco need
    _context: Any = field(default=None, repr=False)

    def __repr__(self) -> str:
        height, width = self.image.shape[:2]
        seg = "" if self.semantic is None else f", semantic {height}x{width}"
        return (f"MCNResult({self.source or 'array'} {width}x{height}: {len(self.boxes)} boxes, "
                f"{len(self.keypoints)} persons with keypoints{seg})")

    def to_coco(self, image_id: int = 0) -> list[dict]:
        """COCO results entries (boxes, keypoints, segmentation RLE), each with its ``task``;
        computed on demand, so that streams do not encode masks they never write."""
        sample, found, predictor, threshold = self._context
        per_task = predictor.coco_results({task: [result] for task, result in found.items()}, [sample], threshold)
        return [{**entry, "task": task, "image_id": image_id} for task, entries in per_task.items() for entry in entries]

    def plot(self, min_side: int = MIN_DRAW_SIDE) -> np.ndarray:
        """The image with boxes, labels, the semantic mask and skeletons, as uint8 RGB [H, W, 3];
        an image smaller than ``min_side`` px is upscaled first, so that labels stay legible
        (0: always the image's own size)."""
        sample, found, predictor, threshold = self._context
        original = torch.from_numpy(self.image).permute(2, 0, 1)
        drawing = draw_prediction(original, sample, found, predictor.info, threshold, min_side, track_ids=self.track_ids)
        return drawing.permute(1, 2, 0).numpy()

    def to_json(self) -> dict:
        """One JSON-ready record: the boxes (with identities when tracked), the persons'
        keypoints and, per box, the mask of its class inside it (COCO RLE) when seg ran."""
        objects = []
        ids = self.track_ids if self.track_ids is not None else np.full(len(self.boxes), UNTRACKED)
        for box, score, label, identity in zip(self.boxes, self.scores, self.labels, ids):
            entry = {"track_id": int(identity), "label": int(label), "name": self.names[int(label)],
                     "score": round(float(score), 4), "box": [round(float(v), 2) for v in box]}
            if self.semantic is not None:
                entry["mask"] = box_mask_rle(self.semantic, box, int(label) + 1)
            objects.append(entry)
        person_ids = self.person_track_ids if self.person_track_ids is not None else \
            np.full(len(self.person_boxes), UNTRACKED)
        persons = [{"track_id": int(identity), "score": round(float(score), 4),
                    "box": [round(float(v), 2) for v in box],
                    "keypoints": [[round(float(v), 2) for v in joint] for joint in joints]}
                   for box, score, joints, identity in zip(self.person_boxes, self.person_scores, self.keypoints,
                                                           person_ids)]
        record = {"frame": self.frame, "source": self.source, "time_ms": round(1000 * self.seconds, 2),
                  "objects": objects, "persons": persons}
        return record if self.frame is not None else {k: v for k, v in record.items() if k != "frame"}


class MCN:
    """A trained Multitask CenterNet for prediction, in PyTorch or onnxruntime.

    ``weights``: a run folder (best, else last weights), a ``.safetensors`` file, or an ``.onnx``
    file made by ``deltalearn mcn export``. ``precision``: PyTorch weights only ("auto", "fp32",
    "bf16", "fp16"). ``score_threshold``: boxes and persons below it are left out of results.
    """

    def __init__(self, weights: str | os.PathLike, precision: str = "auto",
                 score_threshold: float = SCORE_THRESHOLD) -> None:
        self.weights = Path(weights)
        self.predictor: Predictor = load_predictor(self.weights, precision)
        self.info = self.predictor.info
        self.score_threshold = score_threshold
        self.letterbox = Letterbox(self.info.config.data.image_size)

    @property
    def tasks(self) -> list[str]:
        return list(self.predictor.tasks)

    @property
    def names(self) -> list[str]:
        return list(self.info.category_names)

    def __repr__(self) -> str:
        return f"MCN({self.weights}, tasks {self.tasks}, classes {self.names}, input {self.info.config.data.image_size} px)"

    def predict(self, items: Item | Sequence[Item], batch: int = 8) -> list[MCNResult]:
        """One :class:`MCNResult` per item, run ``batch`` images at a time. A single item
        (not in a list) gives a list of one."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        items = _as_list(items)
        results: list[MCNResult] = []
        for start in range(0, len(items), batch):
            results += self._predict_batch(items[start:start + batch])
        return results

    __call__ = predict

    def _predict_batch(self, items: Sequence[Item]) -> list[MCNResult]:
        originals = [_as_sample(item, index) for index, item in enumerate(items)]
        samples = [self.letterbox(original) for original in originals]
        started = time.perf_counter()
        decoded = self.predictor.decode(samples)
        seconds = (time.perf_counter() - started) / len(samples)
        results = []
        for i, (original, sample) in enumerate(zip(originals, samples)):
            results.append(self._result(original, sample, {task: found[i] for task, found in decoded.items()}))
            results[-1].seconds = seconds
        return results

    def predict_images(self, source: str | os.PathLike, out_dir: str | os.PathLike, batch: int = 8,
                       progress: bool = True) -> dict:
        """Predict an image or every image below a folder; write ``out_dir/predictions.json``
        (COCO results, each entry also naming its ``task`` and ``file_name``; ``image_id`` is
        the image's 1-based place in name order) and one drawing per image, ``out_dir/<name>.png``.

        In a folder, an unreadable image is skipped with a warning and counted; a single bad
        image, or a folder without images, is a DataError. Returns the images done, the
        predictions written and the skipped paths.
        """
        source, out_dir = Path(source), Path(out_dir)
        paths = list_images(source)
        if not paths:
            raise DataError(source, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder or below")
        entries: list[dict] = []
        skipped: list[str] = []
        loaded: list[tuple[int, str, np.ndarray]] = []

        def flush() -> None:
            results = self._predict_batch([pixels for _, _, pixels in loaded])
            for (image_id, name, _), result in zip(loaded, results):
                entries.extend({**entry, "file_name": name} for entry in result.to_coco(image_id))
                save_png(torch.from_numpy(result.plot()).permute(2, 0, 1), out_dir / Path(name).with_suffix(".png"))
            loaded.clear()

        for index, path in enumerate(tqdm(paths, desc="predict", unit="image", disable=not progress or len(paths) == 1)):
            try:
                pixels = load_rgb(path)
            except DataError as error:
                if source.is_file():
                    raise
                warnings.warn(f"skipping image: {error}", DataWarning, stacklevel=2)
                skipped.append(str(path))
                continue
            loaded.append((index + 1, str(path.relative_to(source)) if source.is_dir() else path.name, pixels))
            if len(loaded) == batch:
                flush()
        if loaded:
            flush()
        atomic_write_text(out_dir / PREDICTIONS_JSON, json.dumps(entries) + "\n")
        done = len(paths) - len(skipped)
        print(f"{done} image(s): {len(entries)} predictions written to {out_dir / PREDICTIONS_JSON}, drawings in "
              f"{out_dir}" + (f"; skipped {len(skipped)} unreadable image(s)" if skipped else ""))
        return {"images": done, "predictions": len(entries), "skipped": skipped}

    def evaluate(self, data: str | os.PathLike | None = None, ann: str | os.PathLike | None = None,
                 images: str | os.PathLike | None = None, batch: int = 8, workers: int = 1,
                 report: str | os.PathLike | None = None, gallery: int = 4, progress: bool = True) -> dict[str, float]:
        """COCO box and keypoint AP and segmentation IoU on a COCO dataset (a folder with
        annotations.json and images/ as ``data``, or ``ann`` with ``images``) whose categories
        are the network's: the keys of ``mcn eval --json``. ``report``: also write that
        folder's report.md (precision-recall curves, confusion matrix, ``gallery`` worst and
        best images). The numbers of images scored and skipped (unreadable, or contradicting
        their annotations) are kept in ``self.last_evaluation``."""
        dataset = open_coco(Path(data) if data is not None else None, Path(ann) if ann is not None else None,
                            Path(images) if images is not None else None, self.names)
        check_categories(dataset, self.info)
        items = EvalDataset(dataset, self.info.config.data.image_size)
        loader = DataLoader(items, batch_size=batch, num_workers=workers, collate_fn=collate_eval)
        details = evaluate_details(self.predictor, loader, dataset.coco, progress=progress, total=len(loader),
                                   min_score=self.score_threshold)
        done = len(details.per_image)  # bad images are skipped in the loader's workers, out of sight here
        path = None
        if report is not None:
            path = write_report(details, items, self.predictor, report, gallery=gallery,
                                title=f"{self.weights} on {done} images of {dataset.ann_file}")
        self.last_evaluation = {"images": done, "skipped": len(dataset) - done, "report": path, "details": details}
        return details.metrics

    def stream(self, source: str | os.PathLike, track: bool = False) -> Iterator[MCNResult]:
        """Results frame by frame of a video file, a folder of frames, a camera index ("0")
        or a stream URL, one frame in memory at a time. ``track``: boxes and persons keep
        their identity across frames (ByteTrack). Undecodable frames are skipped and counted
        in ``self.last_source.skipped``; a source that cannot be opened is a DataError."""
        frames = FrameSource(source)
        self.last_source = frames
        tracker = BoxTracker(self.score_threshold, frames.fps) if track else None
        for frame in frames:
            result = self._predict_batch([frame.image])[0]
            result.frame, result.source = frame.index, frame.name
            if tracker is not None:
                result.track_ids = tracker.update(result.boxes, result.scores, result.labels)
                result.person_track_ids = match_identities(result.boxes, result.track_ids, result.person_boxes)
            yield result

    def predict_video(self, source: str | os.PathLike, out_dir: str | os.PathLike, track: bool = False,
                      progress: bool = True) -> dict:
        """Write ``out_dir/<name>.mp4`` (each frame drawn, with its FPS) and
        ``out_dir/predictions.jsonl`` (:meth:`MCNResult.to_json` per frame, written as it goes).
        Returns the frames done, skipped, and the mean and median FPS of the network."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        name = "camera" if str(source).isdigit() else Path(str(source).rstrip("/")).stem or "stream"
        results = self.stream(source, track)
        first = next(results, None)  # opens the source before any file is written
        times: list[float] = []
        with open(out_dir / PREDICTIONS_JSONL, "w", encoding="utf-8") as lines, \
                VideoSink(out_dir / f"{name}.mp4", self.last_source.fps) as sink:
            bar = tqdm(desc="predict", unit="frame", total=self.last_source.count, disable=not progress)
            for result in itertools.chain([first] if first is not None else [], results):
                times.append(result.seconds)
                fps = 1.0 / max(result.seconds, 1e-9)
                lines.write(json.dumps(result.to_json()) + "\n")
                lines.flush()
                sink.write(draw_fps(result.plot(min_side=0), fps))
                bar.set_postfix(fps=f"{fps:.1f}", ms=f"{1000 * result.seconds:.1f}")
                bar.update()
            bar.close()
        skipped = len(self.last_source.skipped)
        summary = {"frames": len(times), "skipped": skipped, "video": str(out_dir / f"{name}.mp4"),
                   "predictions": str(out_dir / PREDICTIONS_JSONL),
                   "fps_mean": len(times) / sum(times) if times else 0.0,
                   "fps_median": 1.0 / float(np.median(times)) if times else 0.0}
        print(f"{len(times)} frame(s) at {summary['fps_median']:.1f} FPS (median, network and decoding): "
              f"{summary['video']}, {summary['predictions']}"
              + (f"; skipped {skipped} undecodable frame(s)" if skipped else ""))
        return summary

    def _result(self, original: Sample, sample: Sample, found: dict) -> MCNResult:
        threshold = self.score_threshold
        boxes, scores, labels = np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
        if "det" in found:
            det = found["det"]
            keep = det.scores >= threshold
            boxes = boxes_to_original(det.boxes[keep].float().cpu(), sample).numpy()
            scores, labels = det.scores[keep].float().cpu().numpy(), det.labels[keep].cpu().numpy()
        keypoints = np.zeros((0, len(self.info.keypoint_names), 3), np.float32)
        person_boxes, person_scores = np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
        if "pose" in found:
            pose = found["pose"]
            keep = pose.scores >= threshold
            xy = sample.to_original(pose.keypoints[keep].float().cpu())
            keypoints = torch.cat([xy, pose.keypoint_scores[keep].float().cpu()[..., None]], dim=-1).numpy()
            person_boxes = boxes_to_original(pose.boxes[keep].float().cpu(), sample).numpy()
            person_scores = pose.scores[keep].float().cpu().numpy()
        semantic = labels_to_original(found["seg"].labels.cpu(), sample).numpy() if "seg" in found else None
        return MCNResult(
            image=original.image.permute(1, 2, 0).numpy(), boxes=boxes.astype(np.float32), scores=scores,
            labels=labels.astype(np.int64), names=self.names, keypoints=keypoints.astype(np.float32),
            person_boxes=person_boxes.astype(np.float32), person_scores=person_scores, semantic=semantic,
            source=original.file_name, _context=(sample, found, self.predictor, threshold),
        )


def draw_fps(image: np.ndarray, fps: float) -> np.ndarray:
    """``image`` (RGB) with "<fps> FPS" in its top-left corner, scaled to the image."""
    out = np.ascontiguousarray(image).copy()
    scale = max(0.35, out.shape[0] / 480)
    text = f"{fps:.1f} FPS"
    (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (width + 6, height + 8), (0, 0, 0), -1)
    cv2.putText(out, text, (3, height + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def box_mask_rle(semantic: np.ndarray, box: np.ndarray, value: int) -> dict:
    """COCO RLE of the pixels of class ``value`` in ``semantic`` [H, W] inside xyxy ``box``."""
    mask = np.zeros(semantic.shape, np.uint8)
    x0, y0 = (int(np.floor(max(v, 0.0))) for v in box[:2])
    x1, y1 = int(np.ceil(min(box[2], semantic.shape[1]))), int(np.ceil(min(box[3], semantic.shape[0])))
    mask[y0:y1, x0:x1] = semantic[y0:y1, x0:x1] == value
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _as_list(items: Item | Sequence[Item]) -> list[Item]:
    """``items`` as a list: a single path, array or image becomes a list of one."""
    if isinstance(items, (str, os.PathLike, np.ndarray, torch.Tensor)) or not isinstance(items, Iterable):
        return [items]
    return list(items)


def _as_sample(item: Item, index: int) -> Sample:
    """An original-size Sample (no targets) of a path, an RGB array or a PIL image."""
    name = ""
    if isinstance(item, (str, os.PathLike)):
        name = str(item)
        pixels = load_rgb(item)
    elif isinstance(item, torch.Tensor):
        pixels = item.cpu().numpy()
    elif hasattr(item, "convert") and hasattr(item, "size"):  # a PIL image
        pixels = np.asarray(item.convert("RGB"))
    else:
        pixels = np.asarray(item)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        where = name or f"item {index}"
        raise DataError(where, f"not an RGB image: expected an [H, W, 3] uint8 array, got "
                               f"{list(pixels.shape)} {pixels.dtype}")
    image = torch.from_numpy(np.array(pixels, copy=True)).permute(2, 0, 1).contiguous()
    return Sample(image=image, **empty_targets(*image.shape[-2:]), image_id=index + 1, file_name=name,
                  orig_size=tuple(image.shape[-2:]))


@dataclass
class MAEResult:
    """The patch graph's segmentation of one image, at the image's size."""

    image: np.ndarray  # [H, W, 3] uint8 RGB, the input
    mask: np.ndarray  # [H, W] bool foreground
    score: np.ndarray  # [H, W] float in [0, 1]: the share of Louvain levels that vote foreground
    levels: list[np.ndarray]  # community of each patch [rows * cols], one array per Louvain level, finest first
    grid: tuple[int, int]  # (rows, cols) of the patch grid the levels index
    source: str = ""
    segmentation: Segmentation | None = field(default=None, repr=False)

    def plot(self) -> np.ndarray:
        """The figure of ``mae segment``: image, per-patch error, every level's communities and
        the mask, as uint8 RGB [H, W, 3]."""
        return segmentation_figure(self.image, self.segmentation).permute(1, 2, 0).numpy()


class MAE:
    """A trained MAE as a foreground segmenter through its patch graph (Louvain levels).

    ``weights``: a ``mae pretrain`` run folder or weights file, or an official MAE checkpoint
    with ``variant`` (as ``mae segment --variant``). ``settings``: PatchGraphConfig fields,
    e.g. ``refine="grabcut"``, ``resolution=1.0``, ``affinity="influence"``.
    """

    def __init__(self, weights: str | os.PathLike, variant: str | None = None, **settings: Any) -> None:
        self.weights = Path(weights)
        self.segmenter = PatchGraphSegmenter(load_trained_mae(weights, variant), from_dict(PatchGraphConfig, settings))

    def __repr__(self) -> str:
        config = self.segmenter.model.config
        return f"MAE({self.weights}, input {config.image_hw}, patch {config.patch_size})"

    def segment(self, items: Item | Sequence[Item]) -> list[MAEResult]:
        """One :class:`MAEResult` per image (paths, RGB arrays or PIL images)."""
        samples = [_as_sample(item, index) for index, item in enumerate(_as_list(items))]
        images = [sample.image.permute(1, 2, 0).numpy() for sample in samples]
        for image, sample in zip(images, samples):
            self.segmenter.check_size(image, sample.file_name or f"item {sample.image_id - 1}")
        found = self.segmenter.segment(images)
        return [MAEResult(image, result.mask, result.score, result.levels, (result.graph.rows, result.graph.cols),
                          sample.file_name, result)
                for image, sample, result in zip(images, samples, found)]
