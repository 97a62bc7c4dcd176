"""deltalearn: Multitask CenterNet and MAE patch-graph segmentation."""

__version__ = "0.1.0"
