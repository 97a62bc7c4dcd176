"""Configuration of a Multitask CenterNet run: data, model, losses, training."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import ConfigError
from ..engine.config import TrainConfig
from .tasks import TASKS, check_task_names, unknown_tasks


@dataclass
class SourceConfig:
    """One COCO source of training data and the tasks its annotations label."""

    data: str = ""  # a folder with annotations.json and images/ ...
    ann: str = ""  # ... or a COCO annotation file
    images: str = ""  # and its image folder
    tasks: list[str] = field(default_factory=list)  # tasks it labels (others learn nothing from it); empty: all
    weight: float = 1.0  # sampling weight of each of its images, relative to the other sources' images
    name: str = ""  # in logs and reports; default: the folder or file name

    def __post_init__(self) -> None:
        where = self.name or self.data or self.ann or "a source"
        if bool(self.data) == bool(self.ann) or bool(self.ann) != bool(self.images):
            raise ConfigError(f"data.sources ({where}): give either data: DIR, or ann: FILE with images: DIR")
        unknown = unknown_tasks(self.tasks)
        if unknown:
            raise ConfigError(f"data.sources ({where}): unknown tasks {unknown}")
        if self.weight <= 0:
            raise ConfigError(f"data.sources ({where}): weight must be above 0, got {self.weight}")

    @property
    def label(self) -> str:
        return self.name or Path(self.data or self.ann).name


@dataclass
class DataConfig:
    image_size: int = 256  # network input side in px (letterboxed square), a multiple of 32
    categories: list[str] = field(default_factory=list)  # subset by name, e.g. [person]; empty: all
    scale_range: tuple[float, float] = (0.6, 1.4)  # random zoom of training images
    shift: float = 0.2  # random translation, fraction of the image side
    flip: float = 0.5  # probability of a horizontal flip (left/right keypoints swap)
    color_jitter: float = 0.3  # brightness, contrast and saturation jitter
    hue_jitter: float | None = None  # hue shift; None: min(0.05, color_jitter / 6); the costliest step on CPU
    cache_samples: bool = False  # keep decoded training samples in memory (small data sets)
    workers: int = 2  # DataLoader processes
    # training sources, each with the tasks it labels; empty: the command line's --data (or
    # --ann with --images), labelled for every task
    sources: list[SourceConfig] = field(default_factory=list)


@dataclass
class ViTConfig:
    """The plain-ViT backbone of ``model.backbone: vit`` or ``mae:RUN_OR_FILE`` (see mcn.vit).

    With ``mae:``, empty fields are taken from the MAE's encoder and set ones must agree with
    it; with ``vit`` (random weights), empty fields are ViT-S/16's. A trained MCN's file
    records them all, so it rebuilds without the MAE file.
    """

    embed_dim: int | None = None  # width D (ViT-S: 384)
    depth: int | None = None  # transformer blocks (12)
    num_heads: int | None = None  # attention heads (6)
    patch_size: int | None = None  # patch side in pixels, a power of two (16)
    mlp_ratio: float | None = None  # MLP hidden width / D (4)
    pos_grid: list[int] | None = None  # [rows, cols] the position embeddings are stored at (224 px / patch)
    drop_path: float = 0.0  # stochastic depth rate of the last block (ViTDet fine-tunes ViT-B with 0.1)


@dataclass
class ModelConfig:
    # any timm model with features_only support; "vit": a plain ViT (model.vit); "mae:RUN_OR_FILE":
    # that plain ViT built and initialised from an MAE's encoder (a deltalearn MAE run or file,
    # or an official MAE checkpoint such as mae_pretrain_vit_base.pth)
    backbone: str = "dla34"
    # true: ImageNet weights from timm (needs internet the first time); or a local timm weight
    # file of the backbone (.safetensors, .pth, .bin), for offline machines
    pretrained: bool | str = False
    tasks: list[str] = field(default_factory=lambda: list(TASKS))  # any subset of det, seg, pose
    neck_channels: int = 64  # channels of the stride-4 feature map shared by all heads
    neck_conv: Literal["dense", "separable"] = "dense"  # the neck's 3x3 smoothing convs: dense or depthwise + 1x1
    head_channels: int = 64  # hidden channels of each head's 3x3 conv
    head_trunk: Literal["per_output", "per_task"] = "per_output"  # a 3x3 conv per output (CenterNet) or per task
    head_conv: Literal["dense", "separable"] = "dense"  # that 3x3 conv: dense (CenterNet) or depthwise + 1x1
    pose_offsets: Literal["per_joint", "shared"] = "per_joint"  # keypoint sub-pixel offsets
    # cells that learn the regressed outputs (box size and offset, keypoint displacements):
    # the center cell (CenterNet's) or a Gaussian region around it (TTFNet's), see mcn.heatmaps
    box_regression: Literal["center", "region"] = "center"
    pose_regression: Literal["center", "region"] = "center"
    vit: ViTConfig = field(default_factory=ViTConfig)  # the ViT of backbone vit or mae:...

    def __post_init__(self) -> None:
        try:
            check_task_names(self.tasks)
        except ValueError as error:
            raise ConfigError(f"model.tasks {self.tasks}: {error}") from None


@dataclass
class DetLossConfig:
    heatmap: float = 1.0  # penalty-reduced focal loss on the class-center heatmaps
    size: float = 0.1  # L1 on box width and height (CenterNet's 0.1)
    offset: float = 1.0  # L1 on the sub-cell center offset


@dataclass
class SegLossConfig:
    ce: float = 1.0  # cross-entropy over classes and background (crowd pixels ignored)
    dice: float = 0.0  # soft Dice added to the cross-entropy; 0: off


@dataclass
class PoseLossConfig:
    heatmap: float = 1.0  # focal loss on the 17 keypoint heatmaps
    displacement: float = 1.0  # L1 on the center-to-keypoint vectors
    offset: float = 1.0  # L1 on the keypoint sub-cell offsets


@dataclass
class LossConfig:
    # how the tasks' losses add up: fixed (each task's terms at their weights, summed) or
    # uncertainty (learned homoscedastic weights, Kendall, Gal and Cipolla, CVPR 2018)
    weighting: Literal["fixed", "uncertainty"] = "fixed"
    # Learning without Forgetting (Li and Hoiem, 2016) when growing a network from --init: on
    # each training image, every task of the --init network that the image is not labelled for
    # learns to match that network's outputs, at this weight (0: off; needs --init)
    distill: float = 0.0
    det: DetLossConfig = field(default_factory=DetLossConfig)
    seg: SegLossConfig = field(default_factory=SegLossConfig)
    pose: PoseLossConfig = field(default_factory=PoseLossConfig)

    def term_weights(self, task: str) -> dict[str, float]:
        """The weight of each loss term of ``task``, e.g. ``{"heatmap": 1.0, "size": 0.1, "offset": 1.0}``."""
        return dict(vars(getattr(self, task)))


@dataclass
class MCNConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.data.image_size % 32:
            raise ConfigError(f"data.image_size must be a multiple of 32, got {self.data.image_size}")
