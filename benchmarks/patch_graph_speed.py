"""Speed of the MAE patch graph: graph construction, then Louvain in igraph and in networkx.

    python benchmarks/patch_graph_speed.py [--weights RUN/run] \\
        [--out out/patch_graph_speed.json]

1. Graph construction per image, as ``PatchGraphSegmenter.graphs`` does it (chunks of
   ``segment.BATCH`` images, ``num_masks`` masked copies of each through the MAE in forward
   passes of ``batch_size`` copies, bf16 autocast where the CPU has it): ``mae_vit_cpu_patch8``
   at 64 px (random init, or ``--weights``) and ``mae_vit_base_patch16`` at 224 px (random
   init, few images). The time inside ``patch_graph.masked_errors`` (the forward passes) is
   split from the rest (resizing and normalising, relative errors, edge weights) by wrapping
   that function.
   The inputs are held-out synthetic composites (``make_composite``, seed 1).
2. Louvain (``community_levels``, every level) with igraph on those graphs (8x8 and 14x14
   grids) and on synthetic 8x8 to 56x56 grids (error weights of log-normal random relative
   errors), to show how it scales. One untimed run of each algorithm comes first.
3. networkx's ``louvain_partitions`` on the same graphs (``louvain_communities`` is its last
   partition, so one call gives the partition and the level count). Both times include the
   conversion from ``PatchGraph``. The modularity of both final partitions is computed by
   one function (``communities.modularity``, igraph's definition); as the noise it should
   be compared with, the spread of igraph's own modularity between seeds 0 and 1.
4. Leiden (``community_levels(algorithm="leiden")``): time and modularity.

Times are medians over ``--repeats`` runs per graph, averaged over graphs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Waiting threads spin by default and starve their partner on a shared CPU (see mae_pretrain_cpu.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import igraph  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from deltalearn.config import to_dict  # noqa: E402
from deltalearn.data.io import atomic_write_text  # noqa: E402
from deltalearn.data.synth import make_composite  # noqa: E402
from deltalearn.engine.precision import resolve_precision  # noqa: E402
from deltalearn.mae import patch_graph  # noqa: E402
from deltalearn.mae.communities import community_levels, modularity  # noqa: E402
from deltalearn.mae.model import MaskedAutoencoder, create_mae  # noqa: E402
from deltalearn.mae.pretrain import load_trained_mae  # noqa: E402
from deltalearn.mae.segment import BATCH, PatchGraphConfig, PatchGraphSegmenter  # noqa: E402

IMAGE_SEED = 1  # composites of the held-out seed
SYNTHETIC_SIDES = (8, 14, 28, 56)  # grid sides of the synthetic graphs (the MAEs give 8 and 14)
SEED_NOISE = (0, 1)  # igraph seeds whose modularity spread is the noise reference


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_ms(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """(median wall time in ms over ``repeats`` calls, the last call's result)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), result


@contextmanager
def forward_timer() -> Iterator[list[float]]:
    """Seconds spent in ``patch_graph.masked_errors`` (the forward passes) inside the block."""
    spent: list[float] = []
    original = patch_graph.masked_errors

    def timed(*args: Any, **kwargs: Any) -> patch_graph.MaskedErrors:
        start = time.perf_counter()
        result = original(*args, **kwargs)
        spent.append(time.perf_counter() - start)
        return result

    patch_graph.masked_errors = timed
    try:
        yield spent
    finally:
        patch_graph.masked_errors = original


# ---- 1. graph construction ------------------------------------------------------------------


def composites(count: int, size: int) -> list[np.ndarray]:
    """``count`` RGB uint8 composites [size, size, 3] of the held-out seed."""
    return [make_composite(IMAGE_SEED, i, size)[0] for i in range(count)]


def build_all(segmenter: PatchGraphSegmenter, images: list[np.ndarray]) -> list[patch_graph.PatchGraph]:
    """Graphs of all images in chunks of ``segment.BATCH``, as ``PatchGraphSegmenter.segment`` does."""
    return [g for start in range(0, len(images), BATCH) for g in segmenter.graphs(images[start:start + BATCH])]


def forward_passes(num_images: int, config: PatchGraphConfig) -> int:
    """Forward passes for ``num_images`` images: ceil(chunk * K / batch) per chunk of BATCH images."""
    chunks = [min(BATCH, num_images - s) for s in range(0, num_images, BATCH)]
    return sum(math.ceil(c * config.num_masks / config.batch_size) for c in chunks)


def construction(model: MaskedAutoencoder, images: list[np.ndarray], config: PatchGraphConfig,
                 repeats: int) -> tuple[dict, list[patch_graph.PatchGraph]]:
    """Per-image times of graph construction (median of ``repeats`` after one warm-up image)."""
    segmenter = PatchGraphSegmenter(model, config)
    segmenter.graphs(images[:1])  # warm-up: kernels, allocator
    totals, forwards = [], []
    for _ in range(repeats):
        with forward_timer() as spent:
            start = time.perf_counter()
            graphs = build_all(segmenter, images)
            totals.append(time.perf_counter() - start)
        forwards.append(sum(spent))
    n = len(images)
    total, forward = statistics.median(totals), statistics.median(forwards)
    passes = forward_passes(n, config)
    return {
        "images": n,
        "image_size": model.config.img_size,
        "grid": list(model.grid_size),
        "num_masks": config.num_masks,
        "batch_size": config.batch_size,
        "images_per_chunk": BATCH,
        "forward_passes": passes,
        "forward_passes_per_image": passes / n,
        "copies_per_image": config.num_masks,
        "repeats": repeats,
        "graph_ms_per_image": total / n * 1e3,
        "forward_ms_per_image": forward / n * 1e3,
        "rest_ms_per_image": (total - forward) / n * 1e3,
        "images_per_s": n / total,
    }, graphs


# ---- 2-4. communities -----------------------------------------------------------------------


def synthetic_graphs(side: int, count: int, sigma_scale: float, seed: int) -> list[patch_graph.PatchGraph]:
    """``count`` side x side grid graphs, error weights of log-normal random relative errors."""
    rng = np.random.default_rng(seed)
    edges = patch_graph.grid_edges(side, side)
    graphs = []
    for _ in range(count):
        relative = rng.lognormal(0.0, 0.5, side * side)
        weights = patch_graph.error_weights(relative, edges, sigma_scale)
        graphs.append(patch_graph.PatchGraph(side, side, edges, weights, relative))
    return graphs


def to_networkx(graph: patch_graph.PatchGraph) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(graph.num_nodes))
    g.add_weighted_edges_from(zip(graph.edges[:, 0].tolist(), graph.edges[:, 1].tolist(), graph.weights.tolist()))
    return g


def networkx_levels(graph: patch_graph.PatchGraph, resolution: float, seed: int) -> list[np.ndarray]:
    """Memberships [L] of every networkx Louvain level; the last is ``louvain_communities``."""
    partitions = nx.community.louvain_partitions(to_networkx(graph), weight="weight", resolution=resolution,
                                                 seed=seed)
    levels = []
    for communities in partitions:
        membership = np.empty(graph.num_nodes, dtype=np.int64)
        for label, nodes in enumerate(communities):
            membership[list(nodes)] = label
        levels.append(membership)
    return levels


def warm_up(resolution: float, seed: int) -> None:
    """One untimed run of every algorithm (lazy imports, first-call costs)."""
    graph = synthetic_graphs(8, 1, PatchGraphConfig.sigma_scale, seed)[0]
    community_levels(graph, "louvain", resolution, seed)
    community_levels(graph, "leiden", resolution, seed)
    networkx_levels(graph, resolution, seed)


def compare_communities(graphs: list[patch_graph.PatchGraph], resolution: float, seed: int,
                        repeats: int) -> dict:
    """igraph Louvain vs networkx Louvain vs igraph Leiden on the same graphs: ms and modularity."""
    rows = {"louvain_igraph": [], "louvain_networkx": [], "leiden_igraph": []}
    q = {name: [] for name in rows}
    levels = {"louvain_igraph": [], "louvain_networkx": []}
    communities = {name: [] for name in rows}
    seed_spread = []
    runs = {
        "louvain_igraph": lambda g: community_levels(g, "louvain", resolution, seed),
        "louvain_networkx": lambda g: networkx_levels(g, resolution, seed),
        "leiden_igraph": lambda g: community_levels(g, "leiden", resolution, seed),
    }
    for graph in graphs:
        for name, run in runs.items():
            ms, result = median_ms(lambda: run(graph), repeats)
            rows[name].append(ms)
            q[name].append(modularity(graph, result[-1], resolution))
            communities[name].append(int(result[-1].max()) + 1)
            if name in levels:
                levels[name].append(len(result))
        other = community_levels(graph, "louvain", resolution, SEED_NOISE[1])[-1]
        first = community_levels(graph, "louvain", resolution, SEED_NOISE[0])[-1]
        seed_spread.append(abs(modularity(graph, first, resolution) - modularity(graph, other, resolution)))
    diff = np.abs(np.array(q["louvain_igraph"]) - np.array(q["louvain_networkx"]))
    ig_ms, nx_ms = statistics.mean(rows["louvain_igraph"]), statistics.mean(rows["louvain_networkx"])
    return {
        "graphs": len(graphs),
        "nodes": graphs[0].num_nodes,
        "edges": int(statistics.mean(len(g.edges) for g in graphs)),
        "repeats": repeats,
        "louvain_igraph_ms": ig_ms,
        "louvain_networkx_ms": nx_ms,
        "speedup": nx_ms / ig_ms,
        "leiden_igraph_ms": statistics.mean(rows["leiden_igraph"]),
        "modularity_igraph": statistics.mean(q["louvain_igraph"]),
        "modularity_networkx": statistics.mean(q["louvain_networkx"]),
        "modularity_leiden": statistics.mean(q["leiden_igraph"]),
        "modularity_abs_diff_mean": float(diff.mean()),
        "modularity_abs_diff_max": float(diff.max()),
        "modularity_igraph_seed_spread_mean": statistics.mean(seed_spread),
        "modularity_igraph_seed_spread_max": max(seed_spread),
        "levels_igraph": statistics.mean(levels["louvain_igraph"]),
        "levels_networkx": statistics.mean(levels["louvain_networkx"]),
        "communities_igraph": statistics.mean(communities["louvain_igraph"]),
        "communities_networkx": statistics.mean(communities["louvain_networkx"]),
        "communities_leiden": statistics.mean(communities["leiden_igraph"]),
    }


def modularity_definitions_agree(graphs: list[patch_graph.PatchGraph], resolution: float, seed: int) -> float:
    """Max |igraph Q - networkx Q| of the same partitions: the shared modularity function is fair."""
    worst = 0.0
    for graph in graphs:
        membership = community_levels(graph, "louvain", resolution, seed)[-1]
        sets = [set(np.flatnonzero(membership == c).tolist()) for c in range(int(membership.max()) + 1)]
        q_nx = nx.community.modularity(to_networkx(graph), sets, weight="weight", resolution=resolution)
        worst = max(worst, abs(q_nx - modularity(graph, membership, resolution)))
    return worst


# ---- report ---------------------------------------------------------------------------------


def print_tables(result: dict) -> None:
    print(f"\nCPU {result['cpu']}, {result['torch_threads']} torch threads, precision {result['precision']}, "
          f"K = {result['config']['num_masks']} masks, resolution {result['config']['resolution']}")
    print("\nGraph construction per image")
    print(f"{'model':<22}{'px':>5}{'imgs':>6}{'batch':>7}{'passes/img':>12}{'graph ms':>11}"
          f"{'forward ms':>12}{'rest ms':>9}{'img/s':>8}")
    for key in ("cpu_patch8_64px", "vit_base_224px"):
        c = result[key]["construction"]
        print(f"{result[key]['variant']:<22}{c['image_size']:>5}{c['images']:>6}{c['batch_size']:>7}"
              f"{c['forward_passes_per_image']:>12.3f}{c['graph_ms_per_image']:>11.1f}"
              f"{c['forward_ms_per_image']:>12.1f}{c['rest_ms_per_image']:>9.2f}{c['images_per_s']:>8.2f}")
    print("\nCommunities per graph (ms; modularity Q by igraph's definition for every partition)")
    print(f"{'grid':<8}{'source':<14}{'graphs':>7}{'igraph':>9}{'networkx':>10}{'speedup':>9}{'leiden':>8}"
          f"{'Q igraph':>10}{'Q nx':>8}{'|dQ| mean/max':>15}{'seed |dQ| mean/max':>20}{'Q leiden':>10}"
          f"{'levels ig/nx':>14}")
    for row in result["grid_scaling"]:
        print(f"{str(row['side']) + 'x' + str(row['side']):<8}{row['source'].removeprefix('mae_vit_'):<14}{row['graphs']:>7}{row['louvain_igraph_ms']:>9.2f}"
              f"{row['louvain_networkx_ms']:>10.2f}{row['speedup']:>8.1f}x{row['leiden_igraph_ms']:>8.2f}"
              f"{row['modularity_igraph']:>10.4f}{row['modularity_networkx']:>8.4f}"
              f"{row['modularity_abs_diff_mean']:>8.4f}/{row['modularity_abs_diff_max']:.4f}"
              f"{row['modularity_igraph_seed_spread_mean']:>13.4f}/{row['modularity_igraph_seed_spread_max']:.4f}"
              f"{row['modularity_leiden']:>10.4f}"
              f"{row['levels_igraph']:>8.1f}/{row['levels_networkx']:.1f}")
    print("|dQ|: igraph Louvain vs networkx Louvain, same graph and seed; seed |dQ|: igraph with seeds 0 vs 1")
    print(f"igraph and networkx modularity of the same partitions differ by at most "
          f"{result['modularity_definitions_max_diff']:.2e}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None,
                        help="trained mae_vit_cpu_patch8 run folder or file (default: random init)")
    parser.add_argument("--cpu-images", type=int, default=64, help="64 px images for mae_vit_cpu_patch8")
    parser.add_argument("--vit-images", type=int, default=2, help="224 px images for mae_vit_base_patch16")
    parser.add_argument("--num-masks", type=int, default=PatchGraphConfig.num_masks, help="masks per image (K)")
    parser.add_argument("--batch-size", type=int, default=PatchGraphConfig.batch_size,
                        help="image copies per forward pass")
    parser.add_argument("--resolution", type=float, default=PatchGraphConfig.resolution, help="modularity gamma")
    parser.add_argument("--synthetic-graphs", type=int, default=16, help="synthetic graphs per grid size")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0, help="masks, community detection, synthetic graphs")
    parser.add_argument("--out", "--json", type=Path, default=Path("out/patch_graph_speed.json"),
                        help="write the result as JSON to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = PatchGraphConfig(num_masks=args.num_masks, batch_size=args.batch_size, resolution=args.resolution,
                              seed=args.seed)
    start = time.perf_counter()

    cpu_model = load_trained_mae(args.weights) if args.weights else create_mae("mae_vit_cpu_patch8").eval()
    warm_up(config.resolution, config.seed)
    result: dict[str, Any] = {}
    scaling, real_graphs = [], []
    for key, variant, count, repeats in (("cpu_patch8_64px", "mae_vit_cpu_patch8", args.cpu_images, args.repeats),
                                         ("vit_base_224px", "mae_vit_base_patch16", args.vit_images, 1)):
        model = cpu_model if variant == "mae_vit_cpu_patch8" else create_mae(variant).eval()
        stats, graphs = construction(model, composites(count, model.config.img_size), config, repeats)
        louvain = compare_communities(graphs, config.resolution, config.seed, args.repeats)
        weights = str(args.weights) if args.weights and model is cpu_model else "random init"
        result[key] = {"variant": variant, "weights": weights, "construction": stats, **louvain}
        scaling.append({"side": model.grid_size[0], "source": variant, **louvain})
        real_graphs += graphs
    for side in SYNTHETIC_SIDES:
        graphs = synthetic_graphs(side, args.synthetic_graphs, config.sigma_scale, args.seed)
        scaling.append({"side": side, "source": "synthetic",
                        **compare_communities(graphs, config.resolution, config.seed, args.repeats)})
    result.update({
        "grid_scaling": scaling,
        "modularity_definitions_max_diff": modularity_definitions_agree(real_graphs, config.resolution, config.seed),
        "config": to_dict(config),
        "torch_threads": torch.get_num_threads(),
        "precision": resolve_precision("auto", "cpu").name,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "versions": {"torch": torch.__version__, "igraph": igraph.__version__, "networkx": nx.__version__},
        "seconds": time.perf_counter() - start,
    })
    print_tables(result)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out} ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
