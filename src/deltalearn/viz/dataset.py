"""A dataset at a glance (``deltalearn mcn show``): its summary and drawings of its ground truth."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.utils import make_grid

from .draw import draw_instances, save_png

THUMBNAIL_SIDE = 256  # px of each tile in overview.png


def format_summary(summary: dict) -> str:
    """A readable multi-line summary of ``CocoDataset.summary()`` / ``validate()``."""
    lines = [
        f"images                  {summary['images']}",
        f"images without objects  {summary['images_without_annotations']}",
        "annotations per category:",
    ]
    for name, count in summary["annotations_per_category"].items():
        lines.append(f"  {name:<22}{count}")
    lines += [
        f"labelled keypoints      {summary['labelled_keypoints']}",
        f"crowd regions           {summary['crowd_regions']}",
    ]
    if "skipped" in summary:
        skipped = summary["skipped"]
        lines.append(f"skipped samples         {len(skipped)}")
        for file_name, reason in skipped[:20]:
            lines.append(f"  {file_name}: {reason}")
        if len(skipped) > 20:
            lines.append(f"  ... and {len(skipped) - 20} more")
    return "\n".join(lines)


def show_dataset(dataset, out_dir: str | Path, limit: int = 16) -> dict:  # noqa: ANN001 (CocoDataset)
    """Print the dataset summary (decoding every image) and draw the first ``limit`` samples.

    Writes ``out_dir/<image stem>.png`` per drawn sample and ``out_dir/overview.png``, a grid
    of all drawings. Returns the summary dict.
    """
    summary = dataset.validate(progress=True)
    print(format_summary(summary))
    out_dir = Path(out_dir)
    tiles = []
    drawn = 0
    for index in range(len(dataset)):
        if drawn >= limit:
            break
        sample = dataset[index]
        if sample is None:
            continue
        names = [dataset.category_names[int(label)] for label in sample.labels]
        drawing = draw_instances(
            sample.image, sample.boxes, names, sample.masks, sample.keypoints, sample.crowd
        )
        save_png(drawing, out_dir / f"{Path(sample.file_name).stem}.png")
        tiles.append(_thumbnail(drawing))
        drawn += 1
    if tiles:
        grid = make_grid(tiles, nrow=math.ceil(math.sqrt(len(tiles))), padding=4, pad_value=255)
        save_png(grid, out_dir / "overview.png")
        print(f"drew {drawn} images to {out_dir} (overview.png shows them all)")
    return summary


def _thumbnail(image: torch.Tensor) -> torch.Tensor:
    """Letterbox ``image`` into a THUMBNAIL_SIDE square tile."""
    height, width = image.shape[-2:]
    ratio = THUMBNAIL_SIDE / max(height, width)
    size = [max(1, round(height * ratio)), max(1, round(width * ratio))]
    small = torch.nn.functional.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True)[0]
    tile = torch.full((3, THUMBNAIL_SIDE, THUMBNAIL_SIDE), 255.0)
    tile[:, : size[0], : size[1]] = small
    return tile.clamp(0, 255).byte()
