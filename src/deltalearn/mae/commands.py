"""``deltalearn mae ...``: the masked-autoencoder commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.errors import DataError


def _cmd_synth(args: argparse.Namespace) -> int:
    from .data import generate_composites

    stats = generate_composites(args.out, num_images=args.images, size=args.size, seed=args.seed,
                                workers=args.workers)
    print(f"wrote {stats['images']} images and foreground masks ({args.size} px, seed {args.seed}) to {args.out} "
          f"in {stats['seconds']:.1f} s ({stats['images_per_s']} images/s, {stats['workers']} processes); "
          f"mean foreground share {stats['mean_foreground']}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ..config import find_config, load_config
    from .config import MAEPretrainConfig
    from .pretrain import CONFIG_FILE, pretrain

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
    from .pretrain import load_trained_mae
    from .reconstruct import reconstruct_files

    if not 0.0 <= args.mask_ratio < 1.0:
        raise ValueError(f"--mask-ratio must be in [0, 1), got {args.mask_ratio}")
    model = load_trained_mae(args.weights, args.variant, args.norm_pix_loss)
    stats = reconstruct_files(model, args.source, args.out, mask_ratio=args.mask_ratio, seed=args.seed)
    print(f"wrote {stats['images']} reconstruction figures to {args.out} ({stats['skipped']} unreadable images "
          f"skipped); mean masked-patch loss {stats['mean_loss']:.4f}")
    return 0


def _segmenter(args: argparse.Namespace):
    from ..config import load_config
    from .pretrain import load_trained_mae
    from .segment import PatchGraphConfig, PatchGraphSegmenter

    config = load_config(PatchGraphConfig, args.config, args.overrides)
    model = load_trained_mae(args.weights, args.variant, args.norm_pix_loss)
    return PatchGraphSegmenter(model, config)


def _cmd_segment(args: argparse.Namespace) -> int:
    from .segment import segment_files

    segmenter = _segmenter(args)
    stats = segment_files(segmenter, args.source, args.out, figures=not args.no_figures)
    print(f"wrote {stats['images']} masks to {args.out / 'masks'}"
          + ("" if args.no_figures else f" and figures to {args.out / 'figures'}")
          + f" ({stats['skipped']} images skipped)")
    return 0


def format_eval(result: dict) -> str:
    """The results table of ``mae eval``."""
    rows = [("patch graph" + (" + GrabCut" if result["method"] == "graph+grabcut" else ""), result)]
    rows += [(f"  variant {name}", scores) for name, scores in result["variants"].items() if name != result["method"]]
    rows += [(f"  baseline {name}", scores) for name, scores in result["baselines"].items()]
    rows.append((f"  patch-grid ceiling {result['grid'][0]}x{result['grid'][1]}", result["patch_ceiling"]))
    lines = [f"{'method':<34} {'IoU':>7} {'max F':>7}"]
    lines += [f"{name:<34} {s['iou']:>7.3f} {s['max_fbeta']:>7.3f}" for name, s in rows]
    lines.append(f"{result['images']} images, {result['skipped']} skipped, {result['seconds']:.1f} s")
    return "\n".join(lines)


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from ..config import atomic_write_text, to_dict
    from .evaluate import evaluate_folder

    if not args.data.is_dir():
        raise DataError(args.data, "--data folder not found")
    segmenter = _segmenter(args)
    head = None
    if args.head is not None:
        from .seg_head import load_seg_head

        head = load_seg_head(args.head, segmenter.model)
    result = evaluate_folder(segmenter, args.data, limit=args.limit, baselines=not args.no_baselines, head=head)
    result["config"] = to_dict(segmenter.config)
    print(format_eval(result))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


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
    from ..cli import add_synth_args

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

    from .seg_head import register_head_commands

    register_head_commands(commands)

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
    ev.add_argument("--limit", type=int, default=0, help="score the first N images only (0: all)")
    ev.add_argument("--no-baselines", action="store_true", help="skip center prior, GrabCut and ncut")
    ev.add_argument("--head", type=Path, default=None,
                    help="also score this segmentation head (mae train-head run or file), alone and + GrabCut")
    ev.set_defaults(func=_cmd_eval)
