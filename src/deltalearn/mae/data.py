"""MAE data: any folder of images as a dataset, and the transforms into model input.

Images enter the model as ImageNet-normalised float tensors [3, H, W] (the official MAE
input, so official checkpoints and ours share one pipeline); ``denormalize`` maps back.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor
from torchvision.transforms import v2
from tqdm import tqdm

from ..data.errors import DataError, DataWarning, ImageDecodeError
from ..data.io import find_images, load_rgb
from .config import MAEDataConfig


# ---- images as model input ---------------------------------------------------------------


def train_transform(config: MAEDataConfig) -> v2.Compose:
    """uint8 [3, H, W] -> normalised float [3, S, S]: RandomResizedCrop, horizontal flip."""
    return v2.Compose([
        v2.RandomResizedCrop(config.image_size, scale=config.crop_scale, ratio=config.crop_ratio,
                             interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(config.flip),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    ])


def eval_transform(image_hw: tuple[int, int]) -> v2.Compose:
    """uint8 [3, H, W] -> normalised float [3, *image_hw]: the whole image resized (aspect not kept)."""
    return v2.Compose([
        v2.Resize(image_hw, antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
    ])


def denormalize(images: Tensor) -> Tensor:
    """Normalised [N, 3, H, W] (or [3, H, W]) -> RGB in [0, 1] (not clipped)."""
    shape = (3, 1, 1)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=images.device).view(shape)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=images.device).view(shape)
    return images.float() * std + mean


# ---- image folders -----------------------------------------------------------------------


class ImageFolder(torch.utils.data.Dataset):
    """Every image below ``root``, decoded safely, as ``transform(uint8 [3, H, W])``.

    An unreadable image is skipped: one warning and an entry in ``skipped`` (path -> reason;
    kept by the process that decoded it, so with DataLoader workers the warnings are the
    record). With ``cache`` every image is decoded once here, bad ones leave the dataset
    and ``skipped`` is complete; without it a bad image is replaced by the next readable one.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable[[Tensor], Tensor] | None = None,
                 cache: bool = False) -> None:
        self.root = Path(root)
        self.paths = find_images(self.root)
        self.transform = transform
        self.skipped: dict[str, str] = {}
        self._pixels: list[np.ndarray] | None = None
        if cache:
            decoded = [(path, self.decode(path)) for path in tqdm(self.paths, desc="decoding", unit="img", leave=False)]
            self.paths = [path for path, pixels in decoded if pixels is not None]
            self._pixels = [pixels for _, pixels in decoded if pixels is not None]
            if not self.paths:
                raise DataError(self.root, "no readable image in this folder or below")

    def __len__(self) -> int:
        return len(self.paths)

    def decode(self, path: Path) -> np.ndarray | None:
        """[H, W, 3] uint8, or None (warned and recorded once) for a bad image."""
        try:
            pixels = load_rgb(path)
        except ImageDecodeError as error:
            if str(path) not in self.skipped:
                self.skipped[str(path)] = error.problem
                warnings.warn(f"skipping image: {error}", DataWarning, stacklevel=2)
            return None
        return pixels if pixels.flags.writeable else pixels.copy()  # torch.from_numpy wants writable memory

    def pixels(self, index: int) -> np.ndarray:
        """[H, W, 3] uint8 of image ``index``, or of the next readable one after it."""
        if self._pixels is not None:
            return self._pixels[index]
        for step in range(len(self.paths)):
            pixels = self.decode(self.paths[(index + step) % len(self.paths)])
            if pixels is not None:
                return pixels
        raise DataError(self.root, "no readable image in this folder or below")

    def __getitem__(self, index: int) -> Tensor:
        image = torch.from_numpy(self.pixels(index)).permute(2, 0, 1).contiguous()  # [3, H, W] uint8
        return self.transform(image) if self.transform is not None else image
