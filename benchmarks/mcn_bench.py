"""The multitask claim, measured: one Multitask CenterNet (default DLA-34, seg+det+pose, 512 px)
against the composition of single-task networks, in PyTorch eager (fp32, bf16) and onnxruntime
(fp32, INT8). Runs ``deltalearn mcn bench`` and writes its JSON (default mcn_bench.json).
Run it alone on the machine: other processes skew every timing.

    python benchmarks/mcn_bench.py --json benchmarks/mcn_bench_dla34_512.json
    python benchmarks/mcn_bench.py --size 256 --runs 10 model.head_channels=256
"""

from __future__ import annotations

import sys

from deltalearn.cli import main

DEFAULT_JSON = "mcn_bench.json"


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--json" not in args:
        args += ["--json", DEFAULT_JSON]
    sys.exit(main(["mcn", "bench", *args]))
