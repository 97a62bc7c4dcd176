"""Several training sources, each labelled for some tasks: categories matched by name, samples
tagged with their source's tasks, weighted reproducible sampling, clear errors before training."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.config import ConfigError, load_config
from deltalearn.engine.distributed import WeightedEpochSampler
from deltalearn.engine.metrics_log import read_metrics
from deltalearn.mcn.config import MCNConfig
from deltalearn.mcn.sources import coverage, evaluation_sets, open_sources

TINY = ["model.backbone=resnet18", "model.neck_channels=16", "model.head_channels=16", "data.image_size=64",
        "data.workers=0", "train.batch_size=4", "train.epochs=1", "train.warmup_epochs=0", "train.val_every=0"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A det+pose source, a seg source whose category ids are numbered in reverse, and one
    without keypoints or a category."""
    root = tmp_path_factory.mktemp("sources")
    for name, seed in (("a", 1), ("b", 2)):
        assert main(["mcn", "synth", "--out", str(root / name), "--images", "6", "--size", "64", "--seed", str(seed),
                     "--workers", "1", "--scene", "simple", "--keypoint-min-area", "0"]) == 0
    ann = json.loads((root / "b" / "annotations.json").read_text())
    (root / "b_original.json").write_text(json.dumps(ann))
    ids = {c["id"]: 10 - c["id"] for c in ann["categories"]}  # same names, other ids, other id order
    for c in ann["categories"]:
        c["id"] = ids[c["id"]]
    for a in ann["annotations"]:
        a["category_id"] = ids[a["category_id"]]
    (root / "b" / "annotations.json").write_text(json.dumps(ann))
    bare = json.loads((root / "a" / "annotations.json").read_text())
    for a in bare["annotations"]:
        a.pop("keypoints", None), a.pop("num_keypoints", None)
    bare["categories"] = [c for c in bare["categories"] if c["name"] != "ball"]
    bare["annotations"] = [a for a in bare["annotations"] if a["category_id"] in {c["id"] for c in bare["categories"]}]
    (root / "bare.json").write_text(json.dumps(bare))
    return {"a": root / "a", "b": root / "b", "bare": root / "bare.json", "root": root}


def sources_config(folders: dict[str, Path], *overrides: str) -> MCNConfig:
    return load_config(MCNConfig, None, [f"data.sources=[{{data: {folders['a']}, tasks: [det, pose]}}, "
                                         f"{{data: {folders['b']}, tasks: [seg], weight: 2.0}}]", *overrides])


def test_sources_are_matched_by_category_name_and_tagged_with_their_tasks(folders: dict[str, Path]) -> None:
    mix = open_sources(sources_config(folders))
    a, b = mix.sources
    assert mix.category_names == a.category_names and sorted(b.category_names) == sorted(a.category_names)
    assert b.category_names != a.category_names  # id order differs: the labels must be mapped
    assert len(mix) == 12 and mix.sample_weights == [1.0] * 6 + [2.0] * 6
    first, second = mix[0], mix[6]
    assert first.tasks == ("det", "pose") and second.tasks == ("seg",)
    raw = b[0]
    assert [mix.category_names[label] for label in second.labels.tolist()] == \
        [b.category_names[label] for label in raw.labels.tolist()]
    assert "labels det (" in coverage(mix) and "labels seg (" in coverage(mix)


def test_weighted_sampling_is_reproducible_proportional_and_shared_between_ranks() -> None:
    weights = [1.0] * 50 + [3.0] * 50
    sampler = WeightedEpochSampler(weights, seed=4)
    sampler.set_epoch(2)
    draws = list(sampler)
    again = WeightedEpochSampler(weights, seed=4)
    again.set_epoch(2)
    assert list(again) == draws and len(draws) == 100
    sampler.set_epoch(3)
    assert list(sampler) != draws
    many = WeightedEpochSampler(weights * 100, seed=0)
    share = sum(1 for i in many if i % 100 >= 50) / len(many)
    assert share == pytest.approx(0.75, abs=0.02)
    ranks = [WeightedEpochSampler(weights, seed=4, rank=r, world_size=2) for r in (0, 1)]
    for rank in ranks:
        rank.set_epoch(2)
    assert [len(r) for r in ranks] == [50, 50]
    assert sorted(list(ranks[0]) + list(ranks[1])) == sorted(draws)


@pytest.mark.parametrize("sources, words", [
    ("[{data: A, tasks: [det, poze]}]", "unknown tasks 'poze' (did you mean ['pose']?)"),
    ("[{data: MISSING, tasks: [det]}]", "data folder not found"),
    ("[{ann: BARE, images: A/images, tasks: [det, pose]}]", "declares task 'pose' but"),
    ("[{data: A, tasks: [det, pose]}]", "no source of data.sources labels ['seg']"),
    ("[{data: A, tasks: [det, pose]}, {ann: BARE, images: A/images, tasks: [seg]}]", "unknown categor"),
    ("[{data: A, ann: BARE, tasks: [det]}]", "give either data: DIR, or ann: FILE with images: DIR"),
])
def test_bad_sources_are_one_clear_line_before_training(folders: dict[str, Path], tmp_path: Path, capsys,
                                                        sources: str, words: str) -> None:
    text = sources.replace("MISSING", str(folders["root"] / "missing")).replace("BARE", str(folders["bare"]))
    text = text.replace("A/images", str(folders["a"] / "images")).replace("A", str(folders["a"]))
    config = tmp_path / "sources.yaml"
    config.write_text(yaml.safe_dump({"data": {"sources": yaml.safe_load(text)}, "model": {"tasks": ["det", "seg", "pose"]}}))
    assert main(["mcn", "train", "--config", str(config), "--out", str(tmp_path / "run"), *TINY]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "run" / "last.safetensors").exists()


@pytest.fixture(scope="module")
def two_source_run(folders: dict[str, Path], tmp_path_factory) -> tuple[Path, Path, str]:
    """A run trained on source a (det, pose) and source b (seg): its folder, config and output."""
    root = tmp_path_factory.mktemp("two_sources")
    config = root / "sources.yaml"
    config.write_text(yaml.safe_dump({"data": {"sources": [{"data": str(folders["a"]), "tasks": ["det", "pose"]},
                                                           {"data": str(folders["b"]), "tasks": ["seg"]}]}}))
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert main(["mcn", "train", "--config", str(config), "--out", str(root / "run"), *TINY,
                     "train.epochs=2", "train.log_every=1"]) == 0
    return root / "run", config, capture.getvalue()


def test_train_on_two_sources_each_task_learns_only_from_its_own(folders: dict[str, Path], tmp_path: Path,
                                                                  two_source_run, capsys) -> None:
    run, config, printed = two_source_run
    assert "source a: 6 images, weight 1, labels det (" in printed
    train = [r for r in read_metrics(run) if r.get("split") == "train"]
    assert len(train) == 6  # 12 draws per epoch, batches of 4, 2 epochs
    for record in train:
        assert record["samples.det"] == record["samples.pose"] == 4 - record["samples.seg"]
    assert Counter(r["samples.seg"] > 0 for r in train)[True] >= 1
    assert main(["mcn", "train", "--config", str(config), "--data", str(folders["a"]), "--out", str(tmp_path / "r2"),
                 *TINY]) == EXIT_BAD_INPUT
    assert "give no --data" in capsys.readouterr().err


def test_a_source_config_with_a_misspelt_key_names_the_nearest() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'data.sources\[0\].task'; did you mean 'tasks'"):
        load_config(MCNConfig, None, ["data.sources=[{data: x, task: [det]}]"])


def test_show_prints_each_sources_label_coverage(folders: dict[str, Path], tmp_path: Path, capsys) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(yaml.safe_dump({"data": {"sources": [{"data": str(folders["a"]), "tasks": ["det", "pose"]},
                                                           {"data": str(folders["b"]), "tasks": ["seg"], "name": "segs"}]}}))
    assert main(["mcn", "show", "--config", str(config), "--out", str(tmp_path / "show"), "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "source a: 6 images, weight 1, labels det (" in out and "pose (" in out
    assert "source segs: 6 images, weight 1, labels seg (" in out
    assert (tmp_path / "show" / "segs" / "overview.png").is_file()


def test_eval_scores_each_source_on_the_tasks_it_labels(folders: dict[str, Path], two_source_run,
                                                        tmp_path: Path, capsys) -> None:
    run, config, _ = two_source_run
    assert main(["mcn", "eval", "--weights", str(run), "--config", str(config), "--json", str(tmp_path / "m.json")]) == 0
    found = json.loads((tmp_path / "m.json").read_text())["sources"]
    assert set(found["a"]) == {"det_ap", "det_ap50", "pose_ap", "pose_ap50"} and set(found["b"]) == {"seg_iou", "seg_miou"}
    printed = capsys.readouterr().out
    assert "a (6 images, tasks det, pose)" in printed and "b (6 images, tasks seg)" in printed
    # b's categories are numbered in reverse: its scores equal those of the same file numbered as a is
    original = tmp_path / "original.yaml"
    original.write_text(yaml.safe_dump({"data": {"sources": [
        {"ann": str(folders["root"] / "b_original.json"), "images": str(folders["b"] / "images"), "tasks": ["seg"],
         "name": "b"}]}}))
    assert main(["mcn", "eval", "--weights", str(run), "--config", str(original), "--json", str(tmp_path / "o.json")]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["sources"]["b"] == found["b"]


def test_evaluation_maps_a_sources_labels_and_ids_onto_the_models_by_name(folders: dict[str, Path]) -> None:
    renumbered = sources_config(folders)
    original = load_config(MCNConfig, None, [f"data.sources=[{{ann: {folders['root'] / 'b_original.json'}, "
                                             f"images: {folders['b'] / 'images'}, tasks: [seg]}}]"])
    names = open_sources(renumbered).category_names
    (_, b, b_items, b_ids), = evaluation_sets(renumbered, names, 64)[1:]
    (_, o, o_items, o_ids), = evaluation_sets(original, names, 64)
    assert b.category_names != o.category_names  # the two files order the categories differently
    assert [b.coco["categories"][[c["id"] for c in b.coco["categories"]].index(i)]["name"] for i in b_ids] == names
    assert [o.coco["categories"][[c["id"] for c in o.coco["categories"]].index(i)]["name"] for i in o_ids] == names
    seen = set()
    for index in range(len(b)):
        assert torch.equal(b_items[index].semantic, o_items[index].semantic)
        seen |= set(b_items[index].semantic.unique().tolist()) - {0, 255}
    assert len(seen) >= 2  # several classes: a wrong label map would show


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_sources_train_under_torchrun(folders: dict[str, Path], tmp_path: Path) -> None:
    """Two processes (gloo) train from the weighted mix of a det + pose and a seg source: each
    batch may lack a task on one rank, and DDP must still agree; rank 0 alone prints and writes."""
    config = tmp_path / "sources.yaml"
    config.write_text(yaml.safe_dump({"data": {"sources": [{"data": str(folders["a"]), "tasks": ["det", "pose"]},
                                                           {"data": str(folders["b"]), "tasks": ["seg"],
                                                            "weight": 2.0}]}}))
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "deltalearn.cli", "mcn", "train", "--config", str(config), "--out", str(tmp_path / "run"),
               *TINY, "train.epochs=2"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("source a: 6 images, weight 1, labels det") == 1  # rank 0 only
    assert done.stdout.count("run folder: ") == 1
    records = [r for r in read_metrics(tmp_path / "run") if r["split"] == "train"]
    assert [r["step"] for r in records] == [1, 2]  # 12 images, 2 ranks, batches of 4: 1 step per epoch
    assert all({"samples.det", "samples.seg", "samples.pose"} <= set(r) for r in records)
    assert (tmp_path / "run" / "last.safetensors").is_file()
