"""Argument helpers shared by the command groups."""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_BAD_INPUT = 2  # exit code of a bad input: missing or corrupt file, malformed JSON, wrong config key


def add_synth_args(parser: argparse.ArgumentParser, outputs: str, images: int, size: int) -> None:
    """The arguments of every ``synth`` command (generated datasets)."""
    parser.add_argument("--out", type=Path, required=True, help=f"output folder ({outputs})")
    parser.add_argument("--images", type=int, default=images, help=f"number of images (default {images})")
    parser.add_argument("--size", type=int, default=size, help=f"image side in pixels (default {size})")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
