"""Binary segmentation head on the MAE encoder: a foreground probability for every pixel.

``config`` holds the settings, ``model`` the segmenter and its inference, ``train`` the loss,
the image/mask pairs and the training run, ``weights`` the ``seg_head.safetensors`` files.
"""

from deltalearn.mae.seg_head.config import HeadConfig, SegDataConfig, SegHeadConfig, SegTrainConfig
from deltalearn.mae.seg_head.model import (
    ENCODER_PREFIXES,
    PREDICT_BATCH,
    EdgeRefiner,
    MAESegmenter,
    PatchLogits,
    build_segmenter,
    encoder_fingerprint,
    encoder_state,
    predict_foreground,
)
from deltalearn.mae.seg_head.train import (
    CONFIG_FILE,
    DICE_SMOOTHING,
    PairDataset,
    load_pairs,
    seg_param_groups,
    segmentation_loss,
    soft_dice_loss,
    train_seg_head,
    trainable_segmenter,
)
from deltalearn.mae.seg_head.weights import FILE_FORMAT, HEAD_FILE, load_seg_head, save_seg_head

__all__ = [
    "CONFIG_FILE",
    "DICE_SMOOTHING",
    "ENCODER_PREFIXES",
    "FILE_FORMAT",
    "HEAD_FILE",
    "PREDICT_BATCH",
    "EdgeRefiner",
    "HeadConfig",
    "MAESegmenter",
    "PairDataset",
    "PatchLogits",
    "SegDataConfig",
    "SegHeadConfig",
    "SegTrainConfig",
    "build_segmenter",
    "encoder_fingerprint",
    "encoder_state",
    "load_pairs",
    "load_seg_head",
    "predict_foreground",
    "save_seg_head",
    "seg_param_groups",
    "segmentation_loss",
    "soft_dice_loss",
    "train_seg_head",
    "trainable_segmenter",
]
