"""MCN weights files: the ModelInfo they carry, building the network it describes, loading."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ConfigError, from_dict, to_dict
from ..data.keypoints import KEYPOINT_NAMES, SKELETON
from ..engine import checkpoint as ckpt
from .config import MCNConfig
from .model import MultitaskCenterNet, build_mcn

METADATA_KEY = "deltalearn.mcn"  # safetensors header entry: the model's config and categories


@dataclass
class ModelInfo:
    """What a weights file needs besides tensors: the config and the dataset's categories."""

    config: MCNConfig
    category_ids: list[int]  # label -> COCO category id
    category_names: list[str]
    person_label: int = 0  # label of the category with keypoints
    keypoint_names: list[str] = field(default_factory=lambda: list(KEYPOINT_NAMES))
    skeleton: list[list[int]] = field(default_factory=lambda: [list(limb) for limb in SKELETON])

    def metadata(self) -> dict[str, str]:
        info = {
            "config": to_dict(self.config),
            "category_ids": self.category_ids,
            "category_names": self.category_names,
            "person_label": self.person_label,
            "keypoint_names": self.keypoint_names,
            "skeleton": self.skeleton,
        }
        return {METADATA_KEY: json.dumps(info)}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], path: Path) -> ModelInfo:
        if METADATA_KEY not in metadata:
            raise ckpt.CheckpointError(f"{path}: not an MCN weights file (no '{METADATA_KEY}' metadata)")
        info = json.loads(metadata[METADATA_KEY])
        try:
            config = from_dict(MCNConfig, info.pop("config"))
        except ConfigError as error:
            raise ckpt.CheckpointError(f"{path}: its config is not valid here: {error}") from None
        return cls(config=config, **info)

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)


def person_label_of(category_names: Sequence[str], keypoint_category: int | None = None) -> int:
    """The label whose persons carry keypoints: the keypoint category, else 'person', else 0."""
    if keypoint_category is not None:
        return keypoint_category
    return list(category_names).index("person") if "person" in category_names else 0


def build_model(info: ModelInfo, backbone_weights: bool = True) -> MultitaskCenterNet:
    """The network that ``info.config`` describes, from random (or timm pretrained, or MAE) weights;
    ``backbone_weights=False``: without reading pretrained backbone weights."""
    return build_mcn(info.config.model, num_classes=info.num_classes, person_label=info.person_label,
                     loss=info.config.loss, backbone_weights=backbone_weights)


def load_model(weights: str | Path, device: torch.device | str = "cpu") -> tuple[MultitaskCenterNet, ModelInfo]:
    """A trained model from a run folder (best, else last weights) or a weights file."""
    path = ckpt.find_weights(weights)
    info = ModelInfo.from_metadata(ckpt.weights_metadata(path), path)
    info.config.model.pretrained = False  # the file has every weight
    model = build_model(info, backbone_weights=False)
    ckpt.load_weights(model, path)
    return model.to(device).eval(), info
