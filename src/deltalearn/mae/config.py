"""Configuration of an MAE pretraining run: data, model, training.

The defaults are the embedded CPU recipe (``configs/mae/synth_cpu.yaml`` holds the same
values): ``mae_vit_cpu_patch8`` on 64 px images. ``configs/mae/imagenet_base.yaml`` is the
paper's ViT-B/16 recipe for GPUs.

Learning rate, as in the paper: ``lr = blr * effective batch / 256`` with effective batch
``train.batch_size * world size`` (processes under torchrun), unless ``train.lr`` is set
above 0, which then is the peak learning rate itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ConfigError
from ..engine.config import TrainConfig

LR_REFERENCE_BATCH = 256  # the paper's linear scaling rule: lr = blr * batch / 256


@dataclass
class MAEDataConfig:
    image_size: int = 64  # network input side in px; a multiple of the variant's patch size
    # RandomResizedCrop area range. The paper's (0.2, 1.0) is for 224 px photos; at 64 px a
    # 20 % crop is blown up 2.2x into a blur of few pixels, so the CPU recipe crops less.
    crop_scale: tuple[float, float] = (0.35, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3333)  # aspect-ratio range of the crop, as the paper
    flip: float = 0.5  # probability of a horizontal flip
    cache: bool = True  # decode every image once into memory (small folders); false: decode each step
    workers: int = 0  # DataLoader processes; 0: decode and augment in the training process
    val_images: int = 256  # held-out images per validation (from --val-data); 0: all of them


@dataclass
class MAEModelConfig:
    variant: str = "mae_vit_cpu_patch8"  # a name of deltalearn.mae.MAE_VARIANTS; img_size = data.image_size
    mask_ratio: float = 0.75  # share of patches removed from the encoder's input
    norm_pix_loss: bool = False  # targets normalised per patch (paper: true for ImageNet); false: pixel loss


@dataclass
class MAETrainConfig(TrainConfig):
    """The engine's training settings with the paper's AdamW recipe (betas, decay, no clipping).

    The defaults are the CPU recipe: a few thousand steps of a 2.3 M-parameter model take a
    far higher base learning rate than the paper's 1.5e-4 for 800 epochs of ViT-B.
    """

    blr: float = 2.4e-2  # base learning rate: lr = blr * batch_size * world size / 256 (when lr is 0)
    lr: float = 0.0  # peak learning rate; 0: derived from blr as above
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas of the paper
    weight_decay: float = 0.05  # on weight matrices only: not on norms, biases, cls/mask tokens, pos embeds
    grad_clip: float = 0.0  # the paper does not clip gradients
    warmup_epochs: float = 0.25  # linear warm-up (paper: 40 of 800 epochs)
    epochs: int = 5  # passes over the training set
    batch_size: int = 32  # images per step and process


@dataclass
class MAEPretrainConfig:
    data: MAEDataConfig = field(default_factory=MAEDataConfig)
    model: MAEModelConfig = field(default_factory=MAEModelConfig)
    train: MAETrainConfig = field(default_factory=MAETrainConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.model.mask_ratio < 1.0:
            raise ConfigError(f"model.mask_ratio must be in [0, 1), got {self.model.mask_ratio}")
        low, high = self.data.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ConfigError(f"data.crop_scale must be (low, high) with 0 < low <= high <= 1, got {self.data.crop_scale}")
        if self.train.blr <= 0 and self.train.lr <= 0:
            raise ConfigError("train.blr or train.lr must be above 0")

    def peak_lr(self, world_size: int = 1) -> float:
        """``train.lr`` when set, else ``blr * batch_size * world_size / 256``."""
        if self.train.lr > 0:
            return self.train.lr
        return self.train.blr * self.train.batch_size * world_size / LR_REFERENCE_BATCH
