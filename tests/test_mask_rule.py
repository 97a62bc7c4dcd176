"""One mask rule along every MAE command: the same mask file gives the same boolean mask in
``mae train-head`` (load_pairs), ``mae eval`` and ``mae eval --head`` (evaluate_folder), and
the masks ``mae segment`` writes read back as it computed them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deltalearn.data.io import find_images, load_rgb, pair_masks, read_mask
from deltalearn.mae import create_mae
from deltalearn.mae import evaluate as evaluate_module
from deltalearn.mae.evaluate import evaluate_folder
from deltalearn.mae.seg_head import HeadConfig, build_segmenter, load_pairs
from deltalearn.mae.segment import PatchGraphConfig, PatchGraphSegmenter, segment_files

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread (see conftest)

SIZE = 32
VARIANT = "mae_vit_cpu_patch8"


def tricky_masks(rng: np.random.Generator) -> dict[str, Image.Image]:
    """Masks on which a grayscale threshold and the any-channel rule disagree, or decoding matters."""
    blob = np.zeros((SIZE, SIZE), bool)
    blob[4:20, 6:28] = True
    red = np.zeros((SIZE, SIZE, 3), np.uint8)
    red[blob] = (200, 0, 0)  # luminance about 60: foreground by any channel
    palette = Image.fromarray(blob.astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 0, 0, 160] + [0] * 254 * 3)
    deep = Image.fromarray((rng.integers(0, 2, (SIZE, SIZE)) * (128 * 257)).astype(np.uint16))
    alpha = np.zeros((SIZE, SIZE, 4), np.uint8)
    alpha[..., :3] = 255
    alpha[..., 3] = np.where(blob, 255, 100)  # white everywhere, opaque only on the blob
    return {"red": Image.fromarray(red, "RGB"), "palette": palette, "deep": deep,
            "alpha": Image.fromarray(alpha, "RGBA"),
            "gray": Image.fromarray(np.where(blob, 128, 127).astype(np.uint8), "L")}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """images/NAME.png (random RGB) and masks/NAME.png, one tricky mask per image."""
    folder = tmp_path_factory.mktemp("mask_rule")
    rng = np.random.default_rng(0)
    for name, mask in tricky_masks(rng).items():
        (folder / "images").mkdir(exist_ok=True)
        (folder / "masks").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(folder / "images" / f"{name}.png")
        mask.save(folder / "masks" / f"{name}.png")
    return folder


def expected(folder: Path) -> list[np.ndarray]:
    return [read_mask(path) for path in find_images(folder / "masks")]


def test_the_tricky_masks_are_not_what_a_gray_threshold_gives(data: Path) -> None:
    for path, mask in zip(find_images(data / "masks"), expected(data)):
        gray = np.asarray(Image.open(path).convert("L")) > 127
        assert mask.any() and not mask.all(), path.name
        if path.stem in ("red", "palette", "alpha"):
            assert not np.array_equal(mask, gray), path.name


def test_train_head_reads_the_same_masks(data: Path) -> None:
    pairs, missing = pair_masks(data, data)
    assert missing == [] and [m for _, m in pairs] == find_images(data / "masks")
    _, masks, skipped = load_pairs(pairs, (SIZE, SIZE))  # at the masks' own size: no resampling
    assert sum(skipped.values()) == 0
    for target, mask in zip(masks, expected(data)):
        np.testing.assert_array_equal(target[0].numpy() == 255, mask)
        assert set(np.unique(target.numpy()).tolist()) <= {0, 255}


def test_eval_and_eval_head_read_the_same_masks(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    mae = create_mae(VARIANT, img_size=(SIZE, SIZE)).eval()
    head = build_segmenter(mae, HeadConfig(hidden=0, refine=False)).eval()
    seen: list[np.ndarray] = []
    add = evaluate_module.Scores.add

    def record(self: evaluate_module.Scores, score: np.ndarray, truth: np.ndarray) -> None:
        seen.append(truth.copy())
        add(self, score, truth)

    monkeypatch.setattr(evaluate_module.Scores, "add", record)
    result = evaluate_folder(PatchGraphSegmenter(mae, PatchGraphConfig(num_masks=2)), data, baselines=False,
                             progress=False, head=head)
    assert result["images"] == 5 and result["skipped"] == 0 and {"head", "head+grabcut"} <= set(result["variants"])
    masks = expected(data)
    per_image = len(seen) // len(masks)
    assert per_image == 5 and len(seen) == per_image * len(masks)  # graph (+grabcut), head (+grabcut), ceiling
    for index, mask in enumerate(masks):
        for truth in seen[index * per_image:(index + 1) * per_image]:
            np.testing.assert_array_equal(truth, mask)


def test_segment_writes_masks_that_read_back_as_computed(data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    segmenter = PatchGraphSegmenter(create_mae(VARIANT, img_size=(SIZE, SIZE)).eval(), PatchGraphConfig(num_masks=2))
    segment_files(segmenter, data / "images", tmp_path, figures=False, progress=False)
    images = find_images(data / "images")
    results = segmenter.segment([load_rgb(path) for path in images])
    written = find_images(tmp_path / "masks")
    assert [p.stem for p in written] == [p.stem for p in images]
    for path, result in zip(written, results):
        np.testing.assert_array_equal(read_mask(path), result.mask)
    _, masks, _ = load_pairs(pair_masks(data, tmp_path)[0], (SIZE, SIZE))  # as pseudo-labels for train-head
    for target, result in zip(masks, results):
        np.testing.assert_array_equal(target[0].numpy() == 255, result.mask)
