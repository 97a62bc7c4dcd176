"""``deltalearn mae ...``: the masked-autoencoder commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import find_config, load_config, to_dict
from ..data.errors import DataError
from ..data.io import atomic_write_text
from ..data.synth import generate_composites
from ..mae.config import MAEPretrainConfig
from ..mae.evaluate import Gallery, evaluate_folder, format_eval
from ..mae.pretrain import CONFIG_FILE, load_trained_mae, pretrain
from ..mae.reconstruct import reconstruct_files
from ..mae.report import write_mae_report
from ..mae.seg_head import SegHeadConfig, load_seg_head, train_seg_head
from ..mae.segment import PatchGraphConfig, PatchGraphSegmenter, segment_files
from .common import add_synth_args


def _count(text: str) -> int:
    """A whole number of at least 0, for argparse."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0")
    return int(text)


def _cmd_synth(args: argparse.Namespace) -> int:
    stats = generate_composites(args.out, num_images=args.images, size=args.size, seed=args.seed,
                                workers=args.workers)
    print(f"wrote {stats['images']} images and foreground masks ({args.size} px, seed {args.seed}) to {args.out} "
          f"in {stats['seconds']:.1f} s ({stats['images_per_s']} images/s, {stats['workers']} processes); "
          f"mean foreground share {stats['mean_foreground']}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    for flag, folder in (("--data", args.data), ("--val-data", args.val_data)):
        if folder is not None and not folder.is_dir():
            raise DataError(folder, f"{flag} folder not found")
    config_path = find_config(args.config, "mae")
    if config_path is None and args.resume and (args.out / CONFIG_FILE).is_file():
        config_path = args.out / CONFIG_FILE  # resuming: the run's own config
    config = load_config(MAEPretrainConfig, config_path, args.overrides)
    result = pretrain(config, args.data, args.out, val_dir=args.val_data, resume=args.resume)
    val = "".join(f", {k} {result[k]:.4f}" for k in ("val_loss", "val_baseline_loss") if k in result)
    stop = " (stopped by train.max_minutes)" if result["stopped_early"] else ""
    print(f"done: epoch {result['epoch']}, step {result['step']}{stop}, train loss {result.get('train_loss', float('nan')):.4f}"
          f"{val}; weights {result['weights']}")
    return 0


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    if not 0.0 <= args.mask_ratio < 1.0:
        raise ValueError(f"--mask-ratio must be in [0, 1), got {args.mask_ratio}")
    model = load_trained_mae(args.weights, args.variant, args.norm_pix_loss)
    stats = reconstruct_files(model, args.source, args.out, mask_ratio=args.mask_ratio, seed=args.seed)
    print(f"wrote {stats['images']} reconstruction figures to {args.out} ({stats['skipped']} unreadable images "
          f"skipped); mean masked-patch loss {stats['mean_loss']:.4f}")
    return 0


def _segmenter(args: argparse.Namespace) -> PatchGraphSegmenter:
    config = load_config(PatchGraphConfig, args.config, args.overrides)
    model = load_trained_mae(args.weights, args.variant, args.norm_pix_loss)
    return PatchGraphSegmenter(model, config)


def _cmd_segment(args: argparse.Namespace) -> int:
    segmenter = _segmenter(args)
    stats = segment_files(segmenter, args.source, args.out, figures=not args.no_figures)
    print(f"wrote {stats['images']} masks to {args.out / 'masks'}"
          + ("" if args.no_figures else f" and figures to {args.out / 'figures'}")
          + f" ({stats['skipped']} images skipped)")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if not args.data.is_dir():
        raise DataError(args.data, "--data folder not found")
    segmenter = _segmenter(args)
    head = None
    if args.head is not None:
        head = load_seg_head(args.head, segmenter.model)
    gallery = Gallery(args.gallery) if args.report is not None else None
    result = evaluate_folder(segmenter, args.data, limit=args.limit, baselines=not args.no_baselines, head=head,
                             gallery=gallery, threads=args.threads)
    result["config"] = to_dict(segmenter.config)
    print(format_eval(result))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    if gallery is not None:
        path = write_mae_report(result, gallery, args.report, title=f"{args.weights} on {args.data}")
        print(f"report: {path} (methods side by side, curves, {args.gallery} worst and best images)")
    return 0


def _cmd_train_head(args: argparse.Namespace) -> int:
    for flag, folder in (("--data", args.data), ("--masks", args.masks)):
        if folder is not None and not folder.is_dir():
            raise DataError(folder, f"{flag} folder not found")
    config = load_config(SegHeadConfig, args.config, args.overrides)
    mae = load_trained_mae(args.weights, args.variant, args.norm_pix_loss)
    masks = args.masks if args.masks is not None else args.data
    result = train_seg_head(mae, args.data, masks, args.out, config, mae_source=str(args.weights))
    skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in result["skipped"].items() if v) or "none"
    stop = " (stopped by train.max_minutes)" if result["stopped_early"] else ""
    print(f"done: epoch {result['epoch']}, step {result['step']}{stop}, train loss "
          f"{result.get('train_loss', float('nan')):.4f} on {result['images']} pairs (skipped: {skipped}); "
          f"weights {result['weights']}")
    return 0


def register_train_head(commands: argparse._SubParsersAction) -> None:
    """Add ``train-head`` to the ``deltalearn mae`` subcommands."""
    head = commands.add_parser("train-head", help="train a binary segmentation head on an MAE encoder")
    add_mae_weights_args(head)
    head.add_argument("--data", type=Path, required=True, help="folder with images/ (else the images themselves)")
    head.add_argument("--masks", type=Path, default=None,
                      help="mask folder (DIR/masks when it exists, else DIR), 0/255 PNGs named as the images: "
                           "ground truth or pseudo-labels (default: --data)")
    head.add_argument("--out", type=Path, default=Path("runs/mae_head"), help="run folder (default runs/mae_head)")
    head.add_argument("--config", type=Path, default=None, help="YAML file of SegHeadConfig keys")
    head.add_argument("overrides", nargs="*", metavar="key=value",
                      help="config overrides, e.g. train.epochs=5 train.finetune_encoder=true head.refine=true")
    head.set_defaults(func=_cmd_train_head)


def add_mae_weights_args(parser: argparse.ArgumentParser) -> None:
    """--weights, --variant, --norm-pix-loss: what ``load_trained_mae`` takes."""
    parser.add_argument("--weights", type=Path, required=True, help="MAE run folder or weight file")
    parser.add_argument("--variant", default=None,
                        help="architecture of an official or Hugging Face checkpoint, e.g. mae_vit_base_patch16")
    parser.add_argument("--norm-pix-loss", action="store_true",
                        help="with --variant: the checkpoint predicts normalised patches (official *_full.pth)")


def _add_segment_args(parser: argparse.ArgumentParser) -> None:
    add_mae_weights_args(parser)
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML of patch-graph settings (deltalearn.mae.segment.PatchGraphConfig)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="patch-graph settings, e.g. resolution=1.0 refine=grabcut affinity=influence")


def register(systems: argparse._SubParsersAction) -> None:
    """Add ``mae`` and its commands to the top-level parser."""
    mae = systems.add_parser("mae", help="masked autoencoder: data, pretraining, reconstructions, patch-graph segmentation")
    commands = mae.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate composite images with ground-truth foreground masks")
    add_synth_args(synth, "images/, masks/", images=1000, size=64)
    synth.set_defaults(func=_cmd_synth)

    pre = commands.add_parser("pretrain", help="pretrain an MAE on a folder of images")
    pre.add_argument("--config", type=Path, default=None,
                     help="YAML file, or the name of a shipped config: synth_cpu (the default), imagenet_base; "
                          "with --resume the default is the run's config.yaml")
    pre.add_argument("--data", type=Path, required=True,
                     help="image folder (DIR/images/ when it exists, else DIR), searched recursively")
    pre.add_argument("--val-data", type=Path, default=None,
                     help="held-out image folder: val_loss and val_baseline_loss every train.val_every epochs")
    pre.add_argument("--out", type=Path, default=Path("runs/mae"), help="run folder (default runs/mae)")
    pre.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    pre.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.epochs=3")
    pre.set_defaults(func=_cmd_pretrain)

    rec = commands.add_parser("reconstruct", help="draw masked inputs, reconstructions and patch errors")
    add_mae_weights_args(rec)
    rec.add_argument("--source", type=Path, required=True, help="image file or folder (searched recursively)")
    rec.add_argument("--out", type=Path, required=True, help="output folder, one figure per image")
    rec.add_argument("--mask-ratio", type=float, default=0.75, help="share of patches removed (default 0.75)")
    rec.add_argument("--seed", type=int, default=0, help="seed of the random masks (default 0)")
    rec.set_defaults(func=_cmd_reconstruct)

    register_train_head(commands)

    seg = commands.add_parser("segment", help="foreground masks from the patch graph and Louvain levels")
    _add_segment_args(seg)
    seg.add_argument("--source", type=Path, required=True, help="image file or folder (searched recursively)")
    seg.add_argument("--out", type=Path, required=True, help="output folder: masks/<stem>.png, figures/<stem>.png")
    seg.add_argument("--no-figures", action="store_true", help="write masks only")
    seg.set_defaults(func=_cmd_segment)

    ev = commands.add_parser("eval", help="score patch-graph masks and baselines against ground truth")
    _add_segment_args(ev)
    ev.add_argument("--data", type=Path, required=True, help="folder with images/ and masks/ (same stems)")
    ev.add_argument("--json", type=Path, default=None, help="write the scores as JSON")
    ev.add_argument("--report", type=Path, default=None, metavar="DIR",
                    help="also write DIR/report.md: methods side by side, curves, the worst and best images")
    ev.add_argument("--gallery", type=int, default=4, help="worst and best images in the report (default 4 each)")
    ev.add_argument("--limit", type=int, default=0, help="score the first N images only (0: all)")
    ev.add_argument("--no-baselines", action="store_true", help="skip center prior, GrabCut and ncut")
    ev.add_argument("--threads", type=_count, default=0,
                    help="images scored at once on the CPU (GrabCut, ncut); 0: one per core (default)")
    ev.add_argument("--head", type=Path, default=None,
                    help="also score this segmentation head (mae train-head run or file), alone and + GrabCut")
    ev.set_defaults(func=_cmd_eval)
