"""The ``deltalearn`` command line (see README for every command).

One module per command group registers its subcommands; the library never imports this package."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Callable, Sequence

from .. import __version__
from ..config import ConfigError
from ..data.errors import DataError
from ..engine.distributed import cleanup
from . import demo, mae, mcn
from .common import EXIT_BAD_INPUT

COMMAND_GROUPS = (mcn, mae, demo)  # each has register(subparsers)
__all__ = ["EXIT_BAD_INPUT", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deltalearn",
        description="Multitask CenterNet (detection, segmentation, pose) and MAE patch-graph segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"deltalearn {__version__}")
    systems = parser.add_subparsers(dest="system", required=True)
    for group in COMMAND_GROUPS:
        group.register(systems)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deltalearn`` console script."""
    warnings.formatwarning = _format_warning
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        status = func(args)
    except (DataError, ConfigError, ValueError, OSError) as error:
        if os.environ.get("DELTALEARN_DEBUG"):
            raise
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    # under torchrun the command's trainer joined the process group; the process owns it, so the
    # command leaves it once every rank is done (a failed rank skips this: its peers would wait)
    cleanup()
    return status

