"""The tiny resnet18 networks that the benchmark tests compare."""

from deltalearn.mcn.config import MCNConfig


def tiny_config(tasks: list[str]) -> MCNConfig:
    config = MCNConfig()
    config.model.backbone, config.model.neck_channels, config.model.head_channels = "resnet18", 16, 16
    config.model.tasks = tasks
    return config

