"""deltalearn: Multitask CenterNet and MAE patch-graph segmentation.

``from deltalearn import MCN, MAE`` gives the Python API (:mod:`deltalearn.api`); it is imported on
first use, so that ``import deltalearn.data`` and the command line's ``--help`` stay light.
"""

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["MAE", "MCN", "MAEResult", "MCNResult"]


def __getattr__(name: str) -> Any:  # PEP 562: the API module loads torch and onnxruntime
    if name in __all__:
        return getattr(importlib.import_module(".api", __name__), name)
    raise AttributeError(f"module 'deltalearn' has no attribute {name!r}")
