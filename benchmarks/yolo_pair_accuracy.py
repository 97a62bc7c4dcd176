"""Accuracy at equal steps: the mobile Multitask CenterNet against the pair of current single-task
networks that give the same outputs, YOLO11n-seg + YOLO11n-pose (ultralytics), all three trained
from random weights for the same number of steps (batch 16) on the same 2,000 generated
``simple`` scenes at 128 px, and scored by the same code on the same 200 held-out images.

- MCN: ``synth_seg_det_pose_mobile`` with the schedule following steps (``deltalearn``'s recipe).
- YOLO11n-seg (boxes and instance masks of all classes) and YOLO11n-pose (persons and their 17
  keypoints), each with ultralytics' own recipe (its optimizer choice, warm-up, mosaic and
  other augmentations, closing mosaic for its last epochs), ``imgsz=128``, ``epochs`` = steps /
  125. The data is converted to YOLO's label files: a mask becomes one polygon through the outer
  contours of all its parts, joined by zero-width bridges (the JSON counts masks of several
  parts); persons without keypoints keep their boxes with every keypoint unlabelled (v = 0).

Scoring, both sides: pycocotools box AP over all classes (the MCN's detection head, YOLO-seg's
boxes), keypoint AP (the MCN's pose head, YOLO-pose), and the semantic person IoU and mIoU
(the MCN's segmentation head; YOLO-seg's instance masks scoring at least ``--mask-conf``
painted into one label map, the most confident on top). YOLO predicts with its validation
settings (conf 0.001, NMS IoU 0.7, 100 detections).

Each network's row goes to ``--json`` when it is done; a rerun skips the rows it holds. Needs
``pip install ultralytics``.

    python benchmarks/yolo_pair_accuracy.py --steps 1500 --json benchmarks/results/yolo_pair_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from deltalearn.bench import cpu_model
from deltalearn.config import PACKAGED_CONFIGS, load_config
from deltalearn.data.coco_format import decode_segmentation
from deltalearn.data.io import atomic_write_text
from deltalearn.data.synth import generate_people
from deltalearn.evaluation.coco import coco_stats, run_cocoeval
from deltalearn.evaluation.masks import ConfusionMatrix, segmentation_metrics
from deltalearn.mcn.config import MCNConfig
from deltalearn.mcn.data import EvalDataset, open_coco
from deltalearn.mcn.evaluate import format_metrics, gt_subset
from deltalearn.mcn.train import train

IMAGES, VAL_IMAGES, SIZE, BATCH = 2000, 200, 128, 16
VAL_SEED_OFFSET = 1000  # the held-out images' seed, as in benchmarks/head_designs.py
COCO_FLIP = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]  # left <-> right keypoints
METRICS = ("det_ap", "det_ap50", "pose_ap", "pose_ap50", "seg_iou", "seg_miou")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/yolo_pair_accuracy"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/yolo_pair_accuracy.json"))
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each network (batch 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mask-conf", type=float, default=0.25,
                        help="YOLO-seg instances painted into the semantic map (ultralytics' predict default)")
    parser.add_argument("--only", nargs="+", choices=("mcn", "yolo11n-seg", "yolo11n-pose"),
                        default=["mcn", "yolo11n-seg", "yolo11n-pose"])
    args = parser.parse_args()
    steps_per_epoch = math.ceil(IMAGES / BATCH)
    if args.steps % steps_per_epoch:
        parser.error(f"--steps must be a multiple of {steps_per_epoch} (one epoch of {IMAGES} images)")
    epochs = args.steps // steps_per_epoch

    train_dir, val_dir = args.out / "data" / "train", args.out / "data" / "val"
    for folder, count, seed in ((train_dir, IMAGES, args.seed), (val_dir, VAL_IMAGES, args.seed + VAL_SEED_OFFSET)):
        if not (folder / "annotations.json").is_file():
            generate_people(folder, num_images=count, size=SIZE, seed=seed, scene="simple")
    settings = {"steps": args.steps, "seed": args.seed, "mask_conf": args.mask_conf, "images": IMAGES, "size": SIZE}
    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    if results and results.get("settings") != settings:
        sys.exit(f"error: {args.json}: written with other settings {results.get('settings')}, not {settings}")
    results.update(settings=settings, cpu=cpu_model())
    results.setdefault("commands", []).append("python " + " ".join(sys.argv))  # every invocation that added rows
    results.setdefault("rows", {})

    for name in args.only:
        if name in results["rows"]:
            print(f"{name}: done before, skipped")
            continue
        started = time.time()
        if name == "mcn":
            row = train_mcn(train_dir, val_dir, args.out / "mcn", epochs, args.seed)
        else:
            row = train_yolo(name, train_dir, val_dir, args.out / "yolo", epochs, args.seed, args.mask_conf)
        row["minutes"] = round((time.time() - started) / 60, 1)  # wall clock, scoring included
        results["rows"][name] = row
        print(format_metrics(row["metrics"], title=name))
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    print_table(results)


def train_mcn(train_dir: Path, val_dir: Path, run: Path, epochs: int, seed: int) -> dict:
    config = load_config(MCNConfig, PACKAGED_CONFIGS / "mcn" / "synth_seg_det_pose_mobile.yaml", [
        f"train.epochs={epochs}", "train.max_minutes=0", "train.schedule_by_clock=false",
        f"train.val_every={epochs}", f"train.seed={seed}"])
    metrics = train(config, open_coco(train_dir), run, val_set=open_coco(val_dir))
    return {"steps": metrics.get("step"), "config": "synth_seg_det_pose_mobile",
            "metrics": {k: metrics[k] for k in METRICS if k in metrics}}


# --- YOLO side -----------------------------------------------------------------------------------

def yolo_dataset(coco_dir: Path, out: Path, kind: str) -> dict:
    """Write YOLO label files for the images of ``coco_dir`` (linked, not copied) and return counts."""
    gt = json.loads((coco_dir / "annotations.json").read_text())
    category_ids = sorted(c["id"] for c in gt["categories"])
    person = next(c["id"] for c in gt["categories"] if c["name"] == "person")
    by_image: dict[int, list[dict]] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    counts = {"instances": 0, "crowd_skipped": 0, "multi_part_masks": 0, "no_contour": 0}
    for image in gt["images"]:
        w, h = image["width"], image["height"]
        link = out / "images" / image["file_name"]
        if not link.exists():
            link.symlink_to((coco_dir / "images" / image["file_name"]).resolve())
        lines = []
        for ann in by_image.get(image["id"], []):
            if ann.get("iscrowd"):
                counts["crowd_skipped"] += 1
                continue
            if kind == "seg":
                mask = decode_segmentation(ann.get("segmentation"), ann["bbox"], h, w)  # as the MCN reads it
                contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                contours = [c for c in contours if len(c) >= 3]
                if not contours:
                    counts["no_contour"] += 1
                    continue
                counts["multi_part_masks"] += len(contours) > 1
                polygon = join_parts([c.reshape(-1, 2) for c in contours]) / np.array([w, h])
                values = " ".join(f"{v:.5f}" for v in polygon.flatten())
                lines.append(f"{category_ids.index(ann['category_id'])} {values}")
            elif ann["category_id"] == person:
                x, y, bw, bh = ann["bbox"]
                keypoints = np.array(ann.get("keypoints") or [0] * 51, dtype=np.float64).reshape(17, 3)
                keypoints[:, 0] /= w
                keypoints[:, 1] /= h
                keypoints[keypoints[:, 2] == 0, :2] = 0.0
                values = " ".join(f"{v:.5f}" if i % 3 != 2 else str(int(v))
                                  for i, v in enumerate(keypoints.flatten()))
                lines.append(f"0 {(x + bw / 2) / w:.5f} {(y + bh / 2) / h:.5f} {bw / w:.5f} {bh / h:.5f} {values}")
            else:
                continue
            counts["instances"] += 1
        (out / "labels" / Path(image["file_name"]).with_suffix(".txt").name).write_text("\n".join(lines))
    return counts


def join_parts(parts: list[np.ndarray]) -> np.ndarray:
    """One polygon [N, 2] through every part of a mask: the largest first, then each other part
    entered and left at its point nearest to the polygon so far, over a zero-width bridge
    (YOLO's label files hold one polygon per instance)."""
    parts = sorted(parts, key=lambda part: -cv2.contourArea(part.astype(np.int32)))
    polygon = parts[0]
    for part in parts[1:]:
        distance = ((polygon[:, None, :] - part[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(distance.argmin(), distance.shape)
        polygon = np.concatenate([polygon[:i + 1], part[j:], part[:j + 1], polygon[i:]])
    return polygon


def train_yolo(name: str, train_dir: Path, val_dir: Path, out: Path, epochs: int, seed: int,
               mask_conf: float) -> dict:
    from ultralytics import YOLO  # optional: only this benchmark needs it

    kind = name.split("-")[1]
    root = out / kind
    counts = {split: yolo_dataset(folder, root / split, kind) for split, folder in (("train", train_dir),
                                                                                    ("val", val_dir))}
    gt = json.loads((val_dir / "annotations.json").read_text())
    names = [c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"])]
    data = {"path": str(root.resolve()), "train": "train/images", "val": "val/images",
            "names": dict(enumerate(names if kind == "seg" else ["person"]))}
    if kind == "pose":
        data.update(kpt_shape=[17, 3], flip_idx=COCO_FLIP)
    (root / "data.yaml").write_text(json.dumps(data))
    model = YOLO(f"{name}.yaml")
    model.train(data=str(root / "data.yaml"), imgsz=SIZE, epochs=epochs, batch=BATCH, device="cpu",
                workers=1, pretrained=False, val=False, plots=False, seed=seed, deterministic=False,
                amp=False, project=str(out.resolve()), name=f"{kind}_run", exist_ok=True, verbose=False)
    row = {"steps": epochs * math.ceil(IMAGES / BATCH), "labels": counts,
           "metrics": score_yolo(model, kind, val_dir, gt, mask_conf)}
    return row


def score_yolo(model, kind: str, val_dir: Path, gt: dict, mask_conf: float) -> dict:  # noqa: ANN001
    """The MCN's metrics of a trained YOLO model on the held-out images, scored by the same code."""
    category_ids = sorted(c["id"] for c in gt["categories"])
    person = next(c["id"] for c in gt["categories"] if c["name"] == "person")
    items = EvalDataset(open_coco(val_dir), SIZE)
    files = {image["id"]: val_dir / "images" / image["file_name"] for image in gt["images"]}
    boxes, keypoints, image_ids = [], [], []
    matrix = ConfusionMatrix(len(category_ids) + 1)
    for index in range(len(items)):
        item = items[index]
        if item is None:
            continue
        image_id = item.sample.image_id
        image_ids.append(image_id)
        found, = model.predict(str(files[image_id]), imgsz=SIZE, conf=0.001, iou=0.7, max_det=100,
                               retina_masks=True, device="cpu", verbose=False)
        xywh = found.boxes.xywh.clone()
        xywh[:, :2] -= xywh[:, 2:] / 2
        scores, classes = found.boxes.conf.tolist(), found.boxes.cls.long().tolist()
        for box, score, cls in zip(xywh.tolist(), scores, classes):
            category = category_ids[cls] if kind == "seg" else person
            boxes.append({"image_id": image_id, "category_id": category, "bbox": box, "score": score})
        if kind == "pose":
            for joints, score in zip(found.keypoints.xy.tolist(), scores):
                flat = [v for x, y in joints for v in (x, y, 1.0)]
                keypoints.append({"image_id": image_id, "category_id": person, "keypoints": flat, "score": score})
        else:
            labels = torch.zeros(item.semantic.shape, dtype=torch.int64)
            if found.masks is not None:
                for i in sorted(range(len(scores)), key=lambda i: scores[i]):  # the most confident painted last
                    if scores[i] >= mask_conf:
                        labels[found.masks.data[i].cpu() > 0.5] = classes[i] + 1
            image = ConfusionMatrix(len(category_ids) + 1)
            image.update(labels, item.semantic.long())
            matrix.matrix += image.matrix
    gt = gt_subset(gt, set(image_ids), category_ids)
    metrics = {}
    if kind == "seg":
        stats = coco_stats(run_cocoeval(gt, boxes, "bbox"), "bbox")
        metrics.update(det_ap=stats["ap"], det_ap50=stats["ap50"], **segmentation_metrics(matrix, 0))
    else:
        stats = coco_stats(run_cocoeval(gt, keypoints, "keypoints"), "keypoints")
        metrics.update(pose_ap=stats["ap"], pose_ap50=stats["ap50"])
        person_stats = coco_stats(run_cocoeval(gt_subset(gt, set(image_ids), [person]), boxes, "bbox"), "bbox")
        metrics.update(person_box_ap=person_stats["ap"])
    return metrics


def print_table(results: dict) -> None:
    rows = results["rows"]
    print(f"\n{'network':<26} {'steps':>6} " + " ".join(f"{k:>9}" for k in METRICS) + "  minutes")
    for name, row in rows.items():
        cells = " ".join(f"{100 * row['metrics'][k]:9.1f}" if k in row["metrics"] else f"{'-':>9}" for k in METRICS)
        print(f"{name:<26} {row['steps']:>6} {cells}  {row.get('minutes', '-')}")


if __name__ == "__main__":
    main()
