"""Heatmap helpers: Gaussian radius and drawing, peaks, top-K, the focal prior."""

from __future__ import annotations

import math

import pytest
import torch

from deltalearn.mcn.heatmaps import (
    NOT_A_PEAK,
    draw_gaussian,
    find_peaks,
    focal_prior_bias,
    gather_cells,
    gaussian_radius,
    integer_radius,
    neighbourhood_max,
    topk_logit_peaks,
    topk_peaks,
)


def test_gaussian_radius_known_values() -> None:
    # For a square of side s the third case rules: 2.8 r^2 - 2.8 s r - 0.3 s^2 = 0 as CenterNet
    # writes it, r = s (sqrt(11.2) - 2.8) / 2 = 0.2733 s.
    for side in (4.0, 10.0, 60.0):
        assert gaussian_radius(side, side) == pytest.approx(side * (math.sqrt(11.2) - 2.8) / 2)
    assert gaussian_radius(20, 10) == pytest.approx(3.678, abs=1e-3)  # (-42 + sqrt(2436)) / 2
    assert integer_radius(10, 10) == 2 and integer_radius(1, 1) == 0
    assert gaussian_radius(20, 20, min_overlap=0.9) < gaussian_radius(20, 20)


def test_draw_gaussian_peak_and_border() -> None:
    heat = torch.zeros(16, 16)
    draw_gaussian(heat, (5, 7), radius=2)
    assert heat[7, 5] == 1.0 and heat.max() == 1.0
    assert heat[7, 4] == heat[7, 6] == heat[6, 5] == heat[8, 5] < 1.0
    assert heat[7, 8] == 0.0  # outside the radius
    draw_gaussian(heat, (0, 15), radius=3)  # clipped at the corner
    assert heat[15, 0] == 1.0


def test_find_peaks_and_topk_recover_planted_peaks() -> None:
    torch.manual_seed(0)
    heat = torch.rand(2, 3, 20, 24) * 0.05  # background noise
    planted = [(0, 1, 4, 9, 0.9), (0, 2, 15, 3, 0.8), (1, 0, 10, 20, 0.7)]  # (batch, class, y, x, score)
    for b, c, y, x, score in planted:
        draw_gaussian(heat[b, c], (x, y), radius=2)
        heat[b, c, y, x] = score
    found = topk_peaks(find_peaks(heat), k=2)
    assert found["score"][0].tolist() == pytest.approx([0.9, 0.8])
    assert found["channel"][0].tolist() == [1, 2]
    assert found["y"][0].tolist() == [4, 15] and found["x"][0].tolist() == [9, 3]
    assert (found["channel"][1, 0], found["y"][1, 0], found["x"][1, 0]) == (0, 10, 20)
    assert found["index"][1, 0] == 10 * 24 + 20
    assert gather_cells(heat, found["index"])[1, 0, 0] == pytest.approx(0.7)


@pytest.mark.parametrize("kernel", [3, 5])
def test_neighbourhood_max_is_the_padded_max_pool(kernel: int) -> None:
    generator = torch.Generator().manual_seed(kernel)
    heat = torch.randn(2, 3, 11, 8, generator=generator)
    heat[0, 0, :, :] = heat[0, 0, :1, :1]  # flat plateau: every cell is its own maximum
    expected = torch.nn.functional.max_pool2d(heat, kernel, stride=1, padding=kernel // 2)
    assert torch.equal(neighbourhood_max(heat, kernel), expected)


def test_peaks_of_logits_are_the_peaks_of_their_sigmoid() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 16, 12, generator=generator) * 3
    expected = topk_peaks(find_peaks(torch.sigmoid(logits)), k=30)
    found = topk_logit_peaks(logits, k=30)
    torch.testing.assert_close(found["score"], expected["score"])
    for key in ("channel", "index", "x", "y"):
        assert torch.equal(found[key], expected[key]), key
    few = topk_logit_peaks(torch.zeros(1, 1, 2, 2) - 50.0, k=3)  # 4 equal cells: all peaks
    assert few["score"].shape == (1, 3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_peaks_of_low_precision_logits_are_float32_and_finite(dtype: torch.dtype) -> None:
    logits = (torch.randn(1, 3, 9, 7, generator=torch.Generator().manual_seed(1)) * 3).to(dtype)
    peaks = find_peaks(logits, fill=NOT_A_PEAK)
    assert peaks.dtype == torch.float32 and not torch.isnan(peaks).any()
    assert torch.equal(peaks, find_peaks(logits.float(), fill=NOT_A_PEAK))
    is_peak = peaks > NOT_A_PEAK
    assert is_peak.any() and torch.equal(peaks[is_peak], logits.float()[is_peak])


def test_focal_prior_bias() -> None:
    assert torch.sigmoid(torch.tensor(focal_prior_bias(0.1))) == pytest.approx(0.1)

