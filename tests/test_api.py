"""The Python API: ``from deltalearn import MCN``; paths, arrays and PIL images in, one result
per item out, in original pixels, equal to the CLI's predictions; ONNX files too; typed errors."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import deltalearn
from deltalearn import MAE, MCN, MAEResult, MCNResult
from deltalearn.cli import EXIT_BAD_INPUT, main
from deltalearn.data.errors import DataError, DataWarning
from deltalearn.data.io import atomic_write_bytes, encode_png, load_rgb
from deltalearn.data.synth.video import VIDEO_FILE, generate_people_video
from deltalearn.data.video import FrameSource
from deltalearn.config import ConfigError
from deltalearn.engine.checkpoint import CheckpointError
from deltalearn.mae.weights import save_mae

from .export.settings import SIZE, TINY
from .mae.seg_head.tiny import fresh_mae


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api")
    assert main(["mcn", "synth", "--out", str(root / "set"), "--images", "8", "--size", str(SIZE), "--seed", "5",
                 "--workers", "1"]) == 0
    assert main(["mcn", "train", "--data", str(root / "set"), "--out", str(root / "run"), *TINY,
                 "train.epochs=24"]) == 0
    assert main(["mcn", "export", "--weights", str(root / "run"), "--out", str(root / "model.onnx")]) == 0
    images = sorted((root / "set" / "images").iterdir())
    return {"run": root / "run", "onnx": root / "model.onnx", "images": images, "root": root}


def test_lazy_top_level_names() -> None:
    assert deltalearn.MCN is MCN
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        deltalearn.nothing  # noqa: B018


def test_predict_takes_paths_arrays_tensors_and_pil_images(run: dict[str, Path]) -> None:
    model = MCN(run["run"], precision="fp32", score_threshold=0.1)
    assert model.tasks == ["det", "seg", "pose"] and "person" in model.names
    path = run["images"][0]
    pixels = load_rgb(path)
    wide = np.ascontiguousarray(pixels[: SIZE // 2])  # [32, 64, 3]: letterboxed, mapped back
    items = [str(path), pixels, torch.from_numpy(wide), Image.fromarray(pixels)]
    results = model.predict(items, batch=3)
    assert len(results) == 4 and all(isinstance(r, MCNResult) for r in results)
    for result, (height, width) in zip(results, [(SIZE, SIZE), (SIZE, SIZE), (SIZE // 2, SIZE), (SIZE, SIZE)]):
        assert result.image.shape == (height, width, 3)
        assert result.boxes.shape == (len(result.scores), 4) and result.labels.shape == result.scores.shape
        assert (result.scores >= 0.1).all() and (np.diff(result.scores) <= 0).all()
        assert (result.boxes[:, [0, 2]] >= 0).all() and (result.boxes[:, [0, 2]] <= width).all()
        assert (result.boxes[:, [1, 3]] >= 0).all() and (result.boxes[:, [1, 3]] <= height).all()
        assert result.keypoints.shape == (len(result.person_scores), 17, 3)
        assert result.semantic.shape == (height, width) and result.semantic.max() <= len(model.names)
        assert result.plot(min_side=0).shape == (height, width, 3) and result.plot().dtype == np.uint8
        assert max(result.plot().shape[:2]) >= 512  # small images are drawn larger, legibly
    assert len(results[0].boxes) > 0  # a trained model finds something
    for other in (results[1], results[3]):  # the same pixels, the same results (up to float sums of other batches)
        np.testing.assert_allclose(other.boxes, results[0].boxes, atol=1e-4)
        np.testing.assert_array_equal(other.semantic, results[0].semantic)
    assert results[0].source == str(path) and results[1].source == ""
    single = model.predict(path)
    assert len(single) == 1 and np.allclose(single[0].boxes, results[0].boxes, atol=1e-4)


def test_to_coco_equals_the_cli_predictions(run: dict[str, Path], tmp_path: Path) -> None:
    source = run["images"][0]
    assert main(["mcn", "predict", "--weights", str(run["run"]), "--precision", "fp32", "--source", str(source),
                 "--out", str(tmp_path), "--score", "0.1"]) == 0
    cli = json.loads((tmp_path / "predictions.json").read_text())
    for entry in cli:
        entry.pop("file_name")
    api = MCN(run["run"], precision="fp32", score_threshold=0.1).predict([source])[0].to_coco(image_id=1)
    assert {"det", "pose"} <= {entry["task"] for entry in api}  # seg entries only where a class is found
    assert api == cli


def test_an_onnx_file_predicts_like_the_weights(run: dict[str, Path]) -> None:
    items = [str(path) for path in run["images"][:3]]
    eager = MCN(run["run"], precision="fp32", score_threshold=0.2).predict(items)
    onnx = MCN(run["onnx"], score_threshold=0.2).predict(items)
    for a, b in zip(eager, onnx):
        assert len(a.boxes) == len(b.boxes)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
        assert (a.semantic != b.semantic).mean() < 0.01


def test_errors_are_typed_and_name_the_input(run: dict[str, Path], tmp_path: Path) -> None:
    model = MCN(run["run"])
    with pytest.raises(DataError, match=f"{tmp_path / 'missing.png'}: "):
        model.predict([tmp_path / "missing.png"])
    with pytest.raises(DataError, match=r"item 1: not an RGB image: expected an \[H, W, 3\] uint8 array, got \[8, 8\]"):
        model.predict([load_rgb(run["images"][0]), np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="batch must be at least 1"):
        model.predict(run["images"][0], batch=0)
    with pytest.raises(CheckpointError, match="weights file not found"):
        MCN(tmp_path / "nothing.safetensors")


def test_the_api_raises_what_the_cli_prints(run: dict[str, Path], tmp_path: Path, capsys) -> None:
    """Each case once through the API (a typed error) and once through the CLI (one line, exit 2)."""
    (tmp_path / "empty").mkdir()
    other = tmp_path / "other"
    assert main(["mcn", "synth", "--out", str(other), "--images", "2", "--size", str(SIZE), "--workers", "1"]) == 0
    annotations = json.loads((other / "annotations.json").read_text())
    annotations["categories"] = annotations["categories"][:1]  # person only: not the network's classes
    annotations["annotations"] = [a for a in annotations["annotations"] if a["category_id"] == 1]
    (other / "annotations.json").write_text(json.dumps(annotations))
    model = MCN(run["run"])
    cases = [
        (DataError, lambda: model.predict_images(tmp_path / "empty", tmp_path / "out"),
         ["mcn", "predict", "--weights", str(run["run"]), "--source", str(tmp_path / "empty"), "--out",
          str(tmp_path / "out")]),
        (ValueError, lambda: model.evaluate(other),
         ["mcn", "eval", "--weights", str(run["run"]), "--data", str(other)]),
        (DataError, lambda: model.evaluate(tmp_path / "empty"),
         ["mcn", "eval", "--weights", str(run["run"]), "--data", str(tmp_path / "empty")]),
        (CheckpointError, lambda: MCN(tmp_path / "nothing.onnx"),
         ["mcn", "predict", "--weights", str(tmp_path / "nothing.onnx"), "--source", str(run["images"][0]),
          "--out", str(tmp_path / "out")]),
    ]
    for kind, call, argv in cases:
        with pytest.raises(kind) as caught:
            call()
        capsys.readouterr()
        assert main(argv) == EXIT_BAD_INPUT
        assert capsys.readouterr().err.strip() == f"error: {caught.value}"
    assert not (tmp_path / "out" / "predictions.json").exists()


def test_evaluate_gives_the_cli_metrics_and_report(run: dict[str, Path], tmp_path: Path, capsys) -> None:
    data = run["root"] / "set"
    assert main(["mcn", "eval", "--weights", str(run["run"]), "--precision", "fp32", "--data", str(data),
                 "--json", str(tmp_path / "cli.json")]) == 0
    model = MCN(run["run"], precision="fp32")
    metrics = model.evaluate(data, report=tmp_path / "report", gallery=1, progress=False)
    assert metrics == json.loads((tmp_path / "cli.json").read_text())
    assert model.last_evaluation["images"] == 8 and (tmp_path / "report" / "report.md").is_file()
    broken = tmp_path / "broken"  # one unreadable image: skipped and counted, in the loader's worker too
    (broken / "images").mkdir(parents=True)
    (broken / "annotations.json").write_bytes((data / "annotations.json").read_bytes())
    for path in sorted((data / "images").iterdir()):
        (broken / "images" / path.name).write_bytes(path.read_bytes())
    (broken / "images" / "000003.png").write_bytes(b"not a png")
    with pytest.warns(DataWarning, match="000003.png"):
        model.evaluate(broken, workers=0, progress=False)
    assert (model.last_evaluation["images"], model.last_evaluation["skipped"]) == (7, 1)
    assert main(["mcn", "eval", "--weights", str(run["run"]), "--data", str(broken), "--workers", "1"]) == 0
    assert "on 7 images" in capsys.readouterr().out


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    generate_people_video(folder, frames=10, size=SIZE, persons=2, fps=5.0)
    return folder / VIDEO_FILE


def test_predict_a_video_with_tracking_writes_an_mp4_and_one_line_per_frame(run: dict[str, Path], clip: Path,
                                                                             tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["mcn", "predict", "--weights", str(run["run"]), "--source", str(clip), "--out", str(tmp_path),
                 "--track", "--score", "0.1"]) == 0
    assert "10 frame(s) at " in capsys.readouterr().out
    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(10))
    assert all(line["time_ms"] > 0 for line in lines)
    objects = [o for line in lines for o in line["objects"]]
    assert objects and all({"track_id", "label", "name", "score", "box", "mask"} <= set(o) for o in objects)
    assert any(o["track_id"] >= 0 for o in objects)  # the tracker gave identities
    assert all(len(p["keypoints"]) == 17 for line in lines for p in line["persons"])
    written = FrameSource(tmp_path / "video.mp4")
    assert written.count == 10 and next(iter(written)).image.shape == (SIZE, SIZE, 3)


def test_a_folder_of_frames_with_a_broken_one(run: dict[str, Path], clip: Path, tmp_path: Path, capsys) -> None:
    frames = tmp_path / "frames"
    for frame in FrameSource(clip):
        atomic_write_bytes(frames / f"{frame.index:04d}.png", encode_png(frame.image))
    (frames / "0004.png").write_bytes(b"broken")
    capsys.readouterr()
    with pytest.warns(UserWarning, match="skipping frame"):
        assert main(["mcn", "predict", "--weights", str(run["run"]), "--source", str(frames), "--out",
                     str(tmp_path / "out"), "--video"]) == 0
    assert "skipped 1 undecodable frame(s)" in capsys.readouterr().out
    lines = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert FrameSource(tmp_path / "out" / "frames.mp4").count == 9


def test_streaming_keeps_memory_flat(run: dict[str, Path], tmp_path: Path) -> None:
    """The peak of Python-traced memory (numpy arrays included) for 60 frames is not above
    that of 20 frames by more than a few frames' worth: nothing accumulates per frame."""
    long_clip = generate_people_video(tmp_path / "long", frames=60, size=SIZE, persons=2)
    assert len(long_clip["frames"]) == 60
    model = MCN(run["run"], precision="fp32")
    peaks = []
    for frames in (20, 60):
        tracemalloc.start()
        for result in model.stream(tmp_path / "long" / VIDEO_FILE, track=True):
            result.to_json()
            if result.frame == frames - 1:
                break
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    frame_bytes = SIZE * SIZE * 3
    assert peaks[1] < peaks[0] + 20 * frame_bytes, peaks


def test_sources_that_cannot_be_read_are_one_line_and_exit_2(run: dict[str, Path], tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    cases = {"97": "97: cannot open this camera", str(tmp_path / "empty"): "no images",
             str(tmp_path / "gone.mp4"): "gone.mp4: video file not found"}
    for source, message in cases.items():
        capsys.readouterr()
        assert main(["mcn", "predict", "--weights", str(run["run"]), "--source", source,
                     "--out", str(tmp_path / "out")]) == EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    with pytest.raises(DataError, match="no frames"):
        next(MCN(run["run"]).stream(tmp_path / "empty"))


def test_the_mae_segments_images_into_masks_and_louvain_levels(tmp_path: Path) -> None:
    save_mae(fresh_mae(), tmp_path / "mae.safetensors")
    mae = MAE(tmp_path / "mae.safetensors", num_masks=4)
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    results = mae.segment([image, Image.fromarray(image)])
    assert len(results) == 2 and all(isinstance(r, MAEResult) for r in results)
    first = results[0]
    assert first.mask.shape == (40, 56) and first.mask.dtype == bool and first.score.shape == (40, 56)
    rows, cols = first.grid
    assert first.levels and all(level.shape == (rows * cols,) for level in first.levels)
    np.testing.assert_array_equal(results[1].mask, first.mask)  # the same pixels, the same mask
    assert first.plot().ndim == 3 and first.plot().dtype == np.uint8
    with pytest.raises(DataError, match="item 0: 4x4 px is smaller than one"):
        mae.segment(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ConfigError, match="num_mask"):
        MAE(tmp_path / "mae.safetensors", num_mask=4)


def readme_examples() -> list[str]:
    """The ```python blocks of the README's Python API section."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def test_the_readme_examples_run(run: dict[str, Path], tmp_path: Path, monkeypatch, capsys) -> None:
    """The README's examples, as written, in a folder laid out as the demo leaves it."""
    demo = tmp_path / "demo"
    (demo / "runs").mkdir(parents=True)
    (demo / "runs" / "mcn_seg_det_pose").symlink_to(run["run"])
    (demo / "data" / "people_simple_val").mkdir(parents=True)
    (demo / "data" / "people_simple_val" / "images").symlink_to(run["images"][0].parent)
    (demo / "data" / "people_simple_val" / "annotations.json").symlink_to(run["root"] / "set" / "annotations.json")
    (demo / "runs" / "mae").mkdir()
    save_mae(fresh_mae(), demo / "runs" / "mae" / "mae.safetensors")
    composite = demo / "data" / "composites_val" / "images" / "000000.png"
    atomic_write_bytes(composite, encode_png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    generate_people_video(tmp_path, frames=4, size=SIZE, persons=2)
    (tmp_path / VIDEO_FILE).rename(tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    examples = readme_examples()
    assert len(examples) == 2 and "from deltalearn import MCN" in examples[0]
    for code in examples:
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102
    assert (tmp_path / "out" / "clip" / "clip.mp4").is_file()
    assert len((tmp_path / "out" / "clip" / "predictions.jsonl").read_text().splitlines()) == 4
    assert (tmp_path / "out" / "report" / "report.md").is_file()
