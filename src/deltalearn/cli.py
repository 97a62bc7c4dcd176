"""The ``deltalearn`` command line (see README for every command)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .config import ConfigError
from .data.errors import DataError

EXIT_BAD_INPUT = 2
COMMAND_MODULES = ("mcn.commands", "mae.commands", "demo")  # each has register(subparsers)


def add_synth_args(parser: argparse.ArgumentParser, outputs: str, images: int, size: int) -> None:
    """The arguments of every ``synth`` command (generated datasets)."""
    parser.add_argument("--out", type=Path, required=True, help=f"output folder ({outputs})")
    parser.add_argument("--images", type=int, default=images, help=f"number of images (default {images})")
    parser.add_argument("--size", type=int, default=size, help=f"image side in pixels (default {size})")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deltalearn",
        description="Multitask CenterNet (detection, segmentation, pose) and MAE patch-graph segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"deltalearn {__version__}")
    systems = parser.add_subparsers(dest="system", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(f"deltalearn.{module}").register(systems)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deltalearn`` console script."""
    warnings.formatwarning = _format_warning
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (DataError, ConfigError, ValueError, OSError) as error:
        if os.environ.get("DELTALEARN_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
