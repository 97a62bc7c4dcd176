"""Time the synthetic people generator: images per second for a given size and worker count.

    python benchmarks/synth_speed.py --images 1000 --size 256 --out synth_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from deltalearn.data.synth import generate_people


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="number of images to generate")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all CPU cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON to this file")
    args = parser.parse_args(argv)
    workers = args.workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="synth_speed_") as tmp:
        stats = generate_people(tmp, args.images, args.size, args.seed, workers=workers, progress=False)
    seconds = stats["seconds"]
    result = {
        "images": args.images,
        "size": args.size,
        "seconds": seconds,
        "images_per_s": round(args.images / seconds, 2) if seconds > 0 else None,
        "workers": workers,
        "annotations": stats["annotations"],
        "empty_images": stats["empty_images"],
    }
    print(json.dumps(result))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
