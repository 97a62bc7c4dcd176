"""Center heatmaps shared by the tasks: Gaussian targets, peak finding, top-k, gathering.

Coordinates on the output grid ("grid units") are input pixels divided by the output
stride; cell (i, j) covers grid coordinates [j, j + 1) x [i, i + 1).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

MIN_OVERLAP = 0.7  # CenterNet's IoU bound that sets the Gaussian radius of a box
REGION_BETA = 0.54  # TTFNet's share of a box (and of its Gaussian) whose cells regress it
REGRESSION = ("center", "region")  # the cells that learn a box's regressed outputs, see regression_region
PEAK_KERNEL = 3  # a peak is the maximum of its 3x3 neighbourhood
# logit given to cells that are not peaks: sigmoid 0 in float32, and finite, so that INT8
# calibration of a graph with decoding inside sees no infinite ranges
NOT_A_PEAK = torch.finfo(torch.float32).min


def focal_prior_bias(prior: float = 0.1) -> float:
    """Bias of a heatmap logit so that sigmoid(bias) == prior at initialisation (-2.19 for 0.1)."""
    return -math.log((1.0 - prior) / prior)


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CenterNet's Gaussian radius for a box of ``height`` x ``width`` (grid units).

    The rule of CornerNet/CenterNet's reference code, kept as is because trained models and
    published numbers depend on it: three cases of a box whose corners move by ``r``
    (both corners the same way, both inwards, both outwards) each give a quadratic
    ``a r^2 + b r + c = 0`` in ``r`` from IoU >= ``min_overlap`` (0.7); the radius is the
    smallest of ``(b + sqrt(b^2 - 4 a c)) / 2`` over the three. Note that this is not the
    exact root (no division by ``2 a``, the larger root in the first two cases): it gives
    larger radii than the IoU bound implies (2.73 for a 10 x 10 box, not 0.82). Callers truncate
    it to an integer radius, as CenterNet does.
    """
    size_sum = height + width
    area = height * width
    same_way = (1.0, size_sum, area * (1.0 - min_overlap) / (1.0 + min_overlap))
    inwards = (4.0, 2.0 * size_sum, (1.0 - min_overlap) * area)
    outwards = (4.0 * min_overlap, -2.0 * min_overlap * size_sum, (min_overlap - 1.0) * area)
    radii = [(b + math.sqrt(b * b - 4.0 * a * c)) / 2.0 for a, b, c in (same_way, inwards, outwards)]
    return min(radii)


def integer_radius(height: float, width: float) -> int:
    """The truncated Gaussian radius of a box as the encoders use it (sizes rounded up first)."""
    return max(0, int(gaussian_radius(math.ceil(height), math.ceil(width))))


@functools.lru_cache(maxsize=256)
def gaussian_kernel(radius: int) -> torch.Tensor:
    """The float32 [d, d] Gaussian (d = 2 * radius + 1, sigma = d / 6, 1 at the center) that
    :func:`draw_gaussian` paints; cached, as encoding paints the same few radii again and
    again. Read it, never write it."""
    diameter = 2 * radius + 1
    sigma = diameter / 6.0
    steps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    return torch.exp(-(steps[:, None] ** 2 + steps[None, :] ** 2) / (2.0 * sigma * sigma))


def draw_gaussian(heatmap: torch.Tensor, center: tuple[int, int], radius: int) -> None:
    """Max-paint a Gaussian of value 1 at integer ``center`` (x, y) into ``heatmap`` [h, w].

    The kernel spans ``2 * radius + 1`` cells with sigma = diameter / 6, as CenterNet.
    """
    kernel = gaussian_kernel(radius).to(heatmap)  # [d, d]
    x, y = center
    h, w = heatmap.shape
    left, right = min(x, radius), min(w - x, radius + 1)
    top, bottom = min(y, radius), min(h - y, radius + 1)
    if left + right <= 0 or top + bottom <= 0:
        return
    region = heatmap[y - top:y + bottom, x - left:x + right]
    patch = kernel[radius - top:radius + bottom, radius - left:radius + right]
    torch.maximum(region, patch, out=region)


def box_centers(boxes: torch.Tensor, stride: int, grid_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Centers of xyxy pixel ``boxes`` [N, 4] on the output grid of (h, w) cells.

    Returns ``center`` [N, 2] float (x, y) grid units, ``cell`` [N, 2] int64 (x, y) of the
    cell holding it, ``size`` [N, 2] (w, h) grid units, ``valid`` [N] bool (positive size,
    center inside the grid).
    """
    h, w = grid_size
    grid_boxes = boxes.float() / stride  # [N, 4]
    size = grid_boxes[:, 2:] - grid_boxes[:, :2]  # [N, 2] (w, h)
    center = (grid_boxes[:, :2] + grid_boxes[:, 2:]) / 2.0  # [N, 2] (x, y)
    cell = center.floor().long()
    inside = (cell[:, 0] >= 0) & (cell[:, 0] < w) & (cell[:, 1] >= 0) & (cell[:, 1] < h)
    valid = (size > 0).all(dim=1) & inside
    return {"center": center, "cell": cell, "size": size, "valid": valid}


def regression_region(center: tuple[float, float], size: tuple[float, float], cell: tuple[int, int],
                      grid_size: tuple[int, int], beta: float = REGION_BETA) -> tuple[slice, slice, torch.Tensor]:
    """The cells that regress a box under ``regression="region"``, after TTFNet (Liu et al.,
    AAAI 2020, "Training-Time-Friendly Network for Real-Time Object Detection").

    ``center`` (x, y) and ``size`` (w, h) in grid units, ``cell`` the center's (x, y) cell.
    The region is a rectangle of cells: the columns whose centers lie within beta w / 2 of
    the box center, and the center's column; the rows likewise. Its weights are an
    elliptical Gaussian of the offset from the center cell, exp(-dx^2 / 2 sx^2 - dy^2 / 2 sy^2)
    with (sx, sy) = beta (w, h) / 6 (1 at the center cell, so a box too small for its
    Gaussian to reach a neighbour still has one cell), normalised to sum 1.

    Returns the region as (rows, columns) slices of the [h, w] grid and its weights
    [rows, columns].
    """
    h, w = grid_size
    spans = []
    for axis, limit in ((1, h), (0, w)):
        reach = beta * size[axis] / 2
        first = max(0, min(cell[axis], math.ceil(center[axis] - reach - 0.5)))
        last = min(limit - 1, max(cell[axis], math.floor(center[axis] + reach - 0.5)))
        spans.append(slice(first, last + 1))
    rows, columns = spans
    dy = torch.arange(rows.start, rows.stop, dtype=torch.float32)[:, None] - cell[1]  # [rows, 1]
    dx = torch.arange(columns.start, columns.stop, dtype=torch.float32)[None, :] - cell[0]  # [1, columns]
    sigma_x, sigma_y = max(beta * size[0] / 6, 1e-3), max(beta * size[1] / 6, 1e-3)
    weight = torch.exp(-dx ** 2 / (2 * sigma_x ** 2) - dy ** 2 / (2 * sigma_y ** 2))
    return rows, columns, weight / weight.sum()


def cell_weight(crowd: torch.Tensor, stride: int) -> torch.Tensor:
    """[1, h, w] float heatmap-loss weight: 0 on cells touching a crowd region, else 1."""
    crowd_cells = F.max_pool2d(crowd[None].float(), kernel_size=stride, stride=stride)  # [1, h, w]
    return 1.0 - crowd_cells


def find_peaks(heat: torch.Tensor, kernel: int = PEAK_KERNEL, fill: float = 0.0) -> torch.Tensor:
    """Set every value of ``heat`` [B, C, h, w] that is not the maximum of its neighbourhood to
    ``fill``: 0 for probabilities, :data:`NOT_A_PEAK` for logits (a peak of the logits is one
    of their sigmoid, and the sigmoid is then only needed at the top-k peaks).

    Written as ``heat + not_peak * (fill - heat)``, which gives exactly ``heat`` at peaks and
    exactly ``fill`` elsewhere (for 0, and for :data:`NOT_A_PEAK` with |heat| < 1e31, whose
    sum rounds back to it): the same values as ``torch.where``, whose onnxruntime kernel is
    slower (docs/decoding.md). Computed in float32, whatever ``heat`` is: :data:`NOT_A_PEAK` overflows bfloat16 and
    float16 to -inf, and 0 * -inf would make the peaks NaN."""
    heat = heat.float()
    not_peak = (heat < neighbourhood_max(heat, kernel)).to(heat.dtype)
    return heat + not_peak * (fill - heat)


def neighbourhood_max(heat: torch.Tensor, kernel: int = PEAK_KERNEL) -> torch.Tensor:
    """The maximum of each ``kernel`` x ``kernel`` neighbourhood of ``heat`` [B, C, h, w]:
    ``max_pool2d(heat, kernel, stride=1, padding=kernel // 2)``, computed as a maximum over
    shifted rows, then over shifted columns: the same values, faster on CPU than PyTorch's NCHW
    max-pool (docs/decoding.md). An exported graph gets a MaxPool node, onnxruntime's fast kernel."""
    reach = kernel // 2
    if torch.onnx.is_in_onnx_export():
        return F.max_pool2d(heat, kernel_size=kernel, stride=1, padding=reach)
    padded = F.pad(heat, (reach, reach, reach, reach), value=-math.inf)
    h, w = heat.shape[-2:]
    rows = padded[..., :, :w]
    for shift in range(1, kernel):
        rows = torch.maximum(rows, padded[..., :, shift:shift + w])
    pooled = rows[..., :h, :]
    for shift in range(1, kernel):
        pooled = torch.maximum(pooled, rows[..., shift:shift + h, :])
    return pooled


def topk_logit_peaks(logits: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """:func:`topk_peaks` of the sigmoid of heatmap ``logits`` [B, C, h, w], computed on the
    logits (fewer passes over the map); ``score`` is the sigmoid, 0 where fewer than ``k`` peaks."""
    peaks = topk_peaks(find_peaks(logits, fill=NOT_A_PEAK), k)
    return {**peaks, "score": torch.sigmoid(peaks["score"])}


def topk_peaks(heat: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """The ``k`` highest values of ``heat`` [B, C, h, w] over all channels and cells.

    Returns ``score`` [B, K], ``channel`` [B, K], ``index`` [B, K] (flat cell y * w + x),
    ``x`` and ``y`` [B, K] int64 cell coordinates; K = min(k, C * h * w).
    """
    b, c, h, w = heat.shape
    k = min(k, c * h * w)
    score, flat = heat.reshape(b, -1).topk(k, dim=1)  # [B, K]
    channel = torch.div(flat, h * w, rounding_mode="floor")
    index = flat - channel * (h * w)
    y = torch.div(index, w, rounding_mode="floor")
    x = index - y * w
    return {"score": score, "channel": channel, "index": index, "x": x, "y": y}


def gather_cells(feature: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Values of ``feature`` [B, C, h, w] at flat cell ``index`` [B, K] -> [B, K, C]."""
    b, c = feature.shape[:2]
    flat = feature.reshape(b, c, -1)  # [B, C, h*w]
    picked = flat.gather(2, index[:, None, :].expand(b, c, index.shape[1]))  # [B, C, K]
    return picked.permute(0, 2, 1)


def scatter_cells(feature: torch.Tensor, index: torch.Tensor, values: torch.Tensor,
                  mask: torch.Tensor) -> None:
    """Write ``values`` [B, K, C] into ``feature`` [B, C, h, w] at ``index`` [B, K] where ``mask``.

    The inverse of :func:`gather_cells`, used to build oracle outputs from targets; where two
    entries share a cell the later one wins.
    """
    b, c = feature.shape[:2]
    flat = feature.reshape(b, c, -1)  # a view: writes land in ``feature``
    for i in range(b):
        for slot in mask[i].nonzero().flatten().tolist():
            flat[i, :, index[i, slot]] = values[i, slot]


def logit(probability: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Inverse sigmoid, clamped away from 0 and 1."""
    p = probability.clamp(eps, 1.0 - eps)
    return torch.log(p / (1.0 - p))
