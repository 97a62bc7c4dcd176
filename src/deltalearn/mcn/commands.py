"""``deltalearn mcn ...``: the Multitask CenterNet commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.errors import DataError


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data (either --data, or --ann with --images)")
    group.add_argument("--data", type=Path, help="folder with annotations.json and images/")
    group.add_argument("--ann", type=Path, help="COCO annotation file, e.g. instances_val2017.json")
    group.add_argument("--images", type=Path, help="image folder of --ann, e.g. val2017/")
    group.add_argument("--categories", nargs="+", help="category subset by name or id, e.g. person")


def _data_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(annotation file, image folder) from --data or --ann/--images."""
    if args.data is not None and (args.ann is not None or args.images is not None):
        raise DataError(args.data, "give either --data or --ann with --images, not both")
    if args.data is not None:
        return args.data / "annotations.json", args.data / "images"
    if args.ann is None or args.images is None:
        raise DataError("<command line>", "no data: give --data DIR, or --ann FILE with --images DIR")
    return args.ann, args.images


def _cmd_synth(args: argparse.Namespace) -> int:
    from ..data.synthetic import generate_people

    stats = generate_people(args.out, num_images=args.images, size=args.size, seed=args.seed, workers=args.workers)
    per_category = ", ".join(f"{name} {count}" for name, count in stats["annotations"].items())
    print(
        f"wrote {stats['images']} images ({args.size} px, seed {args.seed}) and annotations.json to {args.out} "
        f"in {stats['seconds']:.1f} s: {per_category}; {stats['empty_images']} images without objects"
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from ..data.coco import CocoDataset
    from ..data.inspect import show_dataset

    ann_file, image_dir = _data_paths(args)
    dataset = CocoDataset(ann_file, image_dir, categories=args.categories)
    show_dataset(dataset, out_dir=args.out, limit=args.limit)
    return 0


def register(systems: argparse._SubParsersAction) -> None:
    """Add ``mcn`` and its commands to the top-level parser."""
    mcn = systems.add_parser("mcn", help="Multitask CenterNet: data, training, evaluation, inference")
    commands = mcn.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="generate the synthetic people dataset (COCO format)")
    synth.add_argument("--out", type=Path, required=True, help="output folder (annotations.json, images/)")
    synth.add_argument("--images", type=int, default=200, help="number of images (default 200)")
    synth.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.set_defaults(func=_cmd_synth)

    show = commands.add_parser("show", help="summarise a COCO dataset and draw its ground truth")
    _add_data_args(show)
    show.add_argument("--out", type=Path, default=Path("show"), help="folder for drawings (default ./show)")
    show.add_argument("--limit", type=int, default=16, help="images to draw (default 16)")
    show.set_defaults(func=_cmd_show)
