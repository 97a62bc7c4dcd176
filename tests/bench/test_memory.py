"""Peak memory of a fresh process that loads and runs the networks."""

from __future__ import annotations

from deltalearn.bench import BenchSettings, count_params, network_infos, peak_memory_mb
from deltalearn.mcn.weights import build_model

from .tiny import tiny_config


def test_peak_memory_of_a_fresh_process_holds_the_weights():
    multitask, _ = network_infos(tiny_config(["det"]), 64)
    weights_mb = count_params([build_model(multitask)]) * 4 / 2**20
    found = peak_memory_mb("eager_fp32", [multitask], None, BenchSettings(size=64, threads=1))
    assert weights_mb < found < weights_mb + 500

