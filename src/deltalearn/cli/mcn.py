"""``deltalearn mcn ...``: the Multitask CenterNet commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch.utils.data import DataLoader

from ..api import MCN
from ..config import ConfigError, find_config, load_config
from ..data.io import atomic_write_text
from ..data.synth import SCENES, generate_people
from ..data.synth.video import TRACKS_FILE, VIDEO_FILE, generate_people_video
from ..data.video import is_video_source
from ..engine.distributed import print0
from ..mcn.config import MCNConfig
from ..mcn.data import collate_eval, open_coco
from ..mcn.evaluate import METRIC_KEYS, evaluate_details, format_metrics
from ..mcn.predictor import Predictor
from ..mcn.report import write_report
from ..mcn.sources import coverage, evaluation_sets, open_sources
from ..mcn.train import train
from ..viz.dataset import show_dataset
from . import export
from .common import add_synth_args


def add_data_args(parser: argparse.ArgumentParser, categories: bool = True) -> None:
    group = parser.add_argument_group("data (either --data, or --ann with --images)")
    group.add_argument("--data", type=Path, help="folder with annotations.json and images/")
    group.add_argument("--ann", type=Path, help="COCO annotation file, e.g. instances_val2017.json")
    group.add_argument("--images", type=Path, help="image folder of --ann, e.g. val2017/")
    if categories:
        group.add_argument("--categories", nargs="+", help="category subset by name or id, e.g. person")


def _cmd_synth_video(args: argparse.Namespace) -> int:
    tracks = generate_people_video(args.out, frames=args.frames, size=args.size, persons=args.persons, fps=args.fps,
                                   seed=args.seed)
    print(f"wrote {len(tracks['frames'])} frames ({args.size} px, {args.fps:g} fps) of {args.persons} walking persons "
          f"to {args.out / VIDEO_FILE}, their identities, boxes and keypoints to {args.out / TRACKS_FILE}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    stats = generate_people(args.out, num_images=args.images, size=args.size, seed=args.seed, workers=args.workers,
                            keypoint_min_area=args.keypoint_min_area, scene=args.scene)
    per_category = ", ".join(f"{name} {count}" for name, count in stats["annotations"].items())
    print(
        f"wrote {stats['images']} {args.scene} images ({args.size} px, seed {args.seed}) and annotations.json to {args.out} "
        f"in {stats['seconds']:.1f} s: {per_category} ({stats['persons_with_keypoints']} persons with keypoints); "
        f"{stats['empty_images']} images without objects"
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    if args.config is None:
        show_dataset(open_coco(args.data, args.ann, args.images, args.categories), out_dir=args.out, limit=args.limit)
        return 0
    config = load_config(MCNConfig, find_config(args.config, "mcn"))
    if not config.data.sources:
        raise ConfigError(f"{args.config}: lists no data.sources (show one dataset with --data)")
    mix = open_sources(config)
    print(coverage(mix))
    for dataset, source in zip(mix.sources, mix.configs):
        print(f"\n{source.label}:")
        show_dataset(dataset, out_dir=args.out / source.label, limit=args.limit)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    saved = args.out / "config.yaml"
    config_path = find_config(args.config, "mcn")
    if config_path is None and args.resume and saved.is_file():
        config_path = saved
    config = load_config(MCNConfig, config_path, args.overrides)
    categories = config.data.categories or args.categories
    if config.data.sources:
        if args.data or args.ann or args.images:
            raise ConfigError("the config lists data.sources: give no --data, --ann or --images as well")
        train_set = open_sources(config)
        print0(coverage(train_set))
        categories = train_set.category_names
    else:
        train_set = open_coco(args.data, args.ann, args.images, categories)
    val_set = open_coco(args.val_data, None, None, categories) if args.val_data else None
    metrics = train(config, train_set, args.out, val_set=val_set, resume=args.resume, init=args.init)
    print0(f"run folder: {args.out}")
    scores = {k: v for k, v in metrics.items() if k in METRIC_KEYS}
    if scores:
        print0(format_metrics(scores))
    elif val_set is None:
        print0("no scores: no validation set (give --val-data, or score later with `deltalearn mcn eval`)")
    else:
        print0("no scores: validation was off (train.val_every=0)")
    return 0


def _eval_sources(args: argparse.Namespace, predictor: Predictor) -> int:
    """``mcn eval --config FILE``: each source of its data.sources on the tasks it labels."""
    config = load_config(MCNConfig, find_config(args.config, "mcn"))
    if not config.data.sources:
        raise ConfigError(f"{args.config}: lists no data.sources (evaluate one dataset with --data)")
    if args.data or args.ann or args.images:
        raise ConfigError("--config with data.sources: give no --data, --ann or --images as well")
    config.model.tasks = list(predictor.info.config.model.tasks)  # the model's tasks, whatever the file says
    found = {}
    for source, dataset, items, ids in evaluation_sets(config, predictor.info.category_names,
                                                       predictor.info.config.data.image_size):
        loader = DataLoader(items, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate_eval)
        details = evaluate_details(predictor, loader, dataset.coco, progress=True, total=len(loader),
                                   tasks=dataset.tasks, category_ids=ids, min_score=args.score)
        found[source.label] = details.metrics
        title = f"{source.label} ({len(details.per_image)} images, tasks {', '.join(dataset.tasks or ())})"
        print(format_metrics(details.metrics, title=title))
        if args.report:
            _print_report(write_report(details, items, predictor, args.report / source.label,
                                       title=f"{args.weights} on {title}", gallery=args.gallery), args.gallery)
    if args.json:
        atomic_write_text(args.json, json.dumps({"sources": found}, indent=2) + "\n")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    model = MCN(args.weights, args.precision, score_threshold=args.score)  # PyTorch weights or an exported .onnx
    if args.config is not None:
        return _eval_sources(args, model.predictor)
    metrics = model.evaluate(args.data, args.ann, args.images, batch=args.batch_size, workers=args.workers,
                             report=args.report, gallery=args.gallery)
    done = model.last_evaluation
    print(format_metrics(metrics, title=f"{args.weights} on {done['images']} images"))
    if done["skipped"]:
        print(f"skipped {done['skipped']} bad image(s)")
    if args.json:
        atomic_write_text(args.json, json.dumps(metrics, indent=2) + "\n")
    if done["report"] is not None:
        _print_report(done["report"], args.gallery)
    return 0


def _print_report(path: Path, gallery: int) -> None:
    print(f"report: {path} (precision-recall curves, confusion matrix, {gallery} worst and best images)")


def _cmd_predict(args: argparse.Namespace) -> int:
    model = MCN(args.weights, args.precision, score_threshold=args.score)
    if is_video_source(args.source) or args.video or args.track:
        model.predict_video(args.source, args.out, track=args.track)
    else:
        model.predict_images(args.source, args.out)
    return 0


def _add_weights_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, required=True,
                        help="run folder (best, else last weights), a .safetensors file, or (predict) an exported .onnx")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="inference precision (auto: bf16 where the device has it)")


def register(systems: argparse._SubParsersAction) -> None:
    """Add ``mcn`` and its commands to the top-level parser."""
    mcn = systems.add_parser("mcn", help="Multitask CenterNet: data, training, evaluation, inference")
    commands = mcn.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate the synthetic people dataset (COCO format)")
    add_synth_args(synth, "annotations.json, images/", images=200, size=256)
    synth.add_argument("--scene", choices=list(SCENES), default="cluttered",
                       help="cluttered (default): up to 8 objects, persons from 20 px, 3-15 distractors; "
                            "simple: up to 4 objects, persons from 30 %% of the side, 0-3 distractors")
    synth.add_argument("--keypoint-min-area", type=int, default=None,
                       help="persons of smaller mask area get no keypoints, as in COCO (default: COCO's "
                            "32^2 px in 640 px images, scaled to --size: 41 at 128 px; 0 labels every person)")
    synth.set_defaults(func=_cmd_synth)

    video = commands.add_parser("synth-video", help="generate a video of walking persons with their tracks")
    video.add_argument("--out", type=Path, required=True, help="output folder (video.mp4, tracks.json)")
    video.add_argument("--frames", type=int, default=48, help="frames (default 48)")
    video.add_argument("--size", type=int, default=128, help="frame side in px (default 128)")
    video.add_argument("--persons", type=int, default=3, help="persons, each in its own column (default 3)")
    video.add_argument("--fps", type=float, default=10.0, help="frames per second (default 10)")
    video.add_argument("--seed", type=int, default=0)
    video.set_defaults(func=_cmd_synth_video)

    show = commands.add_parser("show", help="summarise a COCO dataset and draw its ground truth")
    add_data_args(show)
    show.add_argument("--config", type=Path,
                      help="a config with data.sources: each source's label coverage per task, then its summary")
    show.add_argument("--out", type=Path, default=Path("show"), help="folder for drawings (default ./show)")
    show.add_argument("--limit", type=int, default=16, help="images to draw (default 16)")
    show.set_defaults(func=_cmd_show)

    train = commands.add_parser("train", help="train a Multitask CenterNet")
    train.add_argument("--config", type=Path, help="YAML file, or the name of a shipped config, e.g. synth_seg_det_pose")
    add_data_args(train)
    train.add_argument("--val-data", type=Path, help="validation folder with annotations.json and images/")
    train.add_argument("--out", type=Path, default=Path("runs/mcn"), help="run folder (default runs/mcn)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    train.add_argument("--init", type=Path, metavar="RUN_OR_FILE",
                       help="start from the tensors of these MCN weights (run folder: best, else last) that match "
                            "by name and shape; added tasks start fresh")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=3")
    train.set_defaults(func=_cmd_train)

    evaluate = commands.add_parser("eval", help="COCO box/keypoint AP and segmentation IoU of trained weights")
    _add_weights_args(evaluate)
    add_data_args(evaluate, categories=False)
    evaluate.add_argument("--config", type=Path,
                          help="a config with data.sources: score each source on the tasks it labels")
    evaluate.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    evaluate.add_argument("--report", type=Path, metavar="DIR",
                          help="also write DIR/report.md: precision-recall curves, confusion matrix, a gallery of "
                               "the worst and best images (with --config, one report per source in DIR/<source>)")
    evaluate.add_argument("--gallery", type=int, default=4, help="worst and best images in the report (default 4 each)")
    evaluate.add_argument("--score", type=float, default=0.3,
                          help="score threshold of the report's drawings and per-image scores (default 0.3); "
                               "AP uses every detection")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("--workers", type=int, default=1)
    evaluate.set_defaults(func=_cmd_eval)

    predict = commands.add_parser("predict", help="predictions and drawings for images, a video, a camera or a stream")
    _add_weights_args(predict)
    predict.add_argument("--source", required=True,
                         help="an image or a folder of images (predictions.json and one drawing each); a video "
                              "file, a camera index (0) or a stream URL (an annotated .mp4 and predictions.jsonl)")
    predict.add_argument("--video", action="store_true", help="take a folder as the frames of one video, in name order")
    predict.add_argument("--track", action="store_true",
                         help="keep one identity per object across frames (ByteTrack); implies --video")
    predict.add_argument("--out", type=Path, required=True, help="output folder")
    predict.add_argument("--score", type=float, default=0.3, help="score threshold (default 0.3)")
    predict.set_defaults(func=_cmd_predict)

    export.register(commands)  # export, bench
