"""``deltalearn demo``: the embedded default, end to end on generated data, on CPU."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.synth import SCENES
from ..demo import DEFAULT_MINUTES, run_mae_demo, run_mcn_demo


def _cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_mcn_demo(out, args.minutes, args.images, args.val_images, args.seed, args.scene)
    if args.mae_minutes > 0:
        run_mae_demo(out, args.mae_minutes, args.mae_images, args.val_images, args.seed)
    print(f"demo done: everything is under {out}")
    return 0


def register(systems: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command."""
    demo = systems.add_parser("demo", help="both systems end to end on generated data, on CPU, in minutes")
    demo.add_argument("--out", type=Path, default=Path("demo"), help="output folder (default ./demo)")
    demo.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="MCN training budget in minutes (default 10)")
    demo.add_argument("--images", type=int, default=2000, help="synthetic training images (default 2000)")
    demo.add_argument("--scene", choices=list(SCENES), default="simple",
                      help="generated people scenes (default simple; cluttered is the hard set, see mcn synth)")
    demo.add_argument("--val-images", type=int, default=200, help="held-out images (default 200)")
    demo.add_argument("--mae-minutes", type=float, default=4.0,
                      help="MAE pretraining budget in minutes (default 4; 0 skips the MAE part)")
    demo.add_argument("--mae-images", type=int, default=10000, help="composites for MAE pretraining (default 10000)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_cmd_demo)
