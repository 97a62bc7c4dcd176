"""The demo: both systems end to end on generated data, on CPU (``deltalearn demo``).

Multitask CenterNet: generate the synthetic people dataset (a training set and a held-out
set from another seed), train seg + det + pose within a time budget, evaluate on the
held-out set, print the Table 1 row and draw predictions.

MAE patch graph: generate composites with foreground masks, pretrain the CPU MAE within
its own budget, segment the held-out composites through the patch graph and Louvain,
score them beside the baselines and draw every Louvain level.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from .api import MCN
from .config import PACKAGED_CONFIGS, load_config
from .data.io import atomic_write_text
from .data.synth import generate_composites, generate_people
from .mae.config import MAEPretrainConfig
from .mae.evaluate import evaluate_folder, format_eval
from .mae.pretrain import load_trained_mae, pretrain
from .mae.segment import PatchGraphSegmenter, segment_files
from .mcn.config import MCNConfig
from .mcn.data import open_coco
from .mcn.evaluate import METRIC_KEYS, format_metrics
from .mcn.train import train

VAL_SEED_OFFSET = 1000  # the held-out set's seed is the training seed plus this
DRAWN_IMAGES = 8  # held-out images drawn with their predictions
DEFAULT_MINUTES = 10.0  # the MCN training budget of ``deltalearn demo``
# the demo's epoch cap over what its budget gives a fast 2-core CPU (the 2-core AMD EPYC ran
# its 12 epochs in 7.7 of 10 minutes): the clock, not the cap, ends the run on CPUs
EPOCH_HEADROOM = 4


def mcn_demo_config(minutes: float, seed: int) -> MCNConfig:
    """``synth_seg_det_pose`` with the demo's budget and seed. The budget rules: the epoch
    cap is ``EPOCH_HEADROOM`` times what the budget gives a fast 2-core CPU (12 epochs for 10
    minutes), so that only a machine about that much faster reaches it before the clock, and
    the learning-rate schedule follows the clock, annealing to zero at the deadline."""
    config = load_config(MCNConfig, PACKAGED_CONFIGS / "mcn" / "synth_seg_det_pose.yaml",
                         [f"train.max_minutes={minutes}", f"train.seed={seed}", "train.schedule_by_clock=true"])
    fitting = max(config.train.epochs, math.ceil(config.train.epochs * minutes / DEFAULT_MINUTES))
    config.train.epochs = EPOCH_HEADROOM * fitting
    return config


def run_mcn_demo(out: Path, minutes: float, images: int, val_images: int, seed: int,
                 scene: str = "simple") -> dict[str, float]:
    """Data, training, evaluation and drawings of the MCN demo under ``out``."""
    config = mcn_demo_config(minutes, seed)
    size = config.data.image_size  # generated at the network's input size
    # one folder pair per scene, so that a rerun with another --scene never reuses the other's images
    train_dir, val_dir = out / "data" / f"people_{scene}_train", out / "data" / f"people_{scene}_val"
    for folder, count, data_seed in ((train_dir, images, seed), (val_dir, val_images, seed + VAL_SEED_OFFSET)):
        if not (folder / "annotations.json").is_file():
            stats = generate_people(folder, num_images=count, size=size, seed=data_seed, scene=scene)
            print(f"generated {count} {scene} images of {size} px in {folder} ({stats['seconds']:.0f} s)")
    run_dir = out / "runs" / "mcn_seg_det_pose"
    print(f"training seg + det + pose ({config.model.backbone}, {config.data.image_size} px) for at most "
          f"{minutes:g} minutes into {run_dir}")
    started = time.time()
    metrics = train(config, open_coco(train_dir), run_dir, val_set=open_coco(val_dir))
    result = {key: metrics[key] for key in METRIC_KEYS if key in metrics}
    result["train_minutes"] = (time.time() - started) / 60
    atomic_write_text(out / "mcn_metrics.json", json.dumps(result, indent=2) + "\n")
    print(format_metrics(result, title=f"held-out {scene} synthetic set ({val_images} images, seed {seed + VAL_SEED_OFFSET})"))
    drawings = out / "mcn_predictions"
    sources = sorted((val_dir / "images").glob("*.png"))[:DRAWN_IMAGES]
    source_dir = out / "data" / f"people_{scene}_val_sample"
    source_dir.mkdir(parents=True, exist_ok=True)
    for path in sources:
        (source_dir / path.name).write_bytes(path.read_bytes())
    MCN(run_dir).predict_images(source_dir, drawings)
    return result


def run_mae_demo(out: Path, minutes: float, images: int, val_images: int, seed: int) -> dict:
    """Composites, MAE pretraining, patch-graph evaluation and figures under ``out``."""
    config = load_config(MAEPretrainConfig, PACKAGED_CONFIGS / "mae" / "synth_cpu.yaml",
                         [f"train.max_minutes={minutes}", f"train.seed={seed}", "train.val_every=0"])
    size = config.data.image_size
    train_dir, val_dir = out / "data" / "composites_train", out / "data" / "composites_val"
    for folder, count, data_seed in ((train_dir, images, seed), (val_dir, val_images, seed + VAL_SEED_OFFSET)):
        if not (folder / "masks").is_dir():
            stats = generate_composites(folder, num_images=count, size=size, seed=data_seed)
            print(f"generated {count} composites of {size} px in {folder} ({stats['seconds']:.0f} s)")
    run_dir = out / "runs" / "mae"
    print(f"pretraining {config.model.variant} for at most {minutes:g} minutes into {run_dir}")
    if not (run_dir / "mae.safetensors").is_file():
        pretrain(config, train_dir, run_dir)
    segmenter = PatchGraphSegmenter(load_trained_mae(run_dir))
    result = evaluate_folder(segmenter, val_dir)
    atomic_write_text(out / "mae_segmentation.json", json.dumps(result, indent=2) + "\n")
    print(format_eval(result))
    sample = out / "data" / "composites_val_sample"
    sample.mkdir(parents=True, exist_ok=True)
    for path in sorted((val_dir / "images").glob("*.png"))[:DRAWN_IMAGES]:
        (sample / path.name).write_bytes(path.read_bytes())
    segment_files(segmenter, sample, out / "mae_segments")
    return result
