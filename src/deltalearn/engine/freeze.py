"""``train.freeze``: parts of a model kept fixed, named by parameter-name prefixes.

A prefix names a module path, whole components only: ``backbone`` freezes ``backbone.*``,
``tasks.det`` freezes ``tasks.det.*`` but not ``tasks.detail``. Frozen parameters get
``requires_grad=False`` (the optimizer never sees them) and frozen norm layers stay in eval
mode (:func:`hold_norms`), so their running statistics do not move either.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from torch import nn

from ..config import ConfigError


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_prefixes(model: nn.Module) -> list[str]:
    """Every dotted prefix that names parameters of ``model``, e.g. backbone, tasks, tasks.det."""
    prefixes: dict[str, None] = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            prefixes[".".join(parts[:end])] = None
    return list(prefixes)


def freeze(model: nn.Module, prefixes: Sequence[str]) -> list[nn.Module]:
    """Set ``requires_grad=False`` on the parameters under ``prefixes``; return the frozen norm
    layers (BatchNorm), which :func:`hold_norms` keeps in eval mode.

    A prefix that names no parameter, or prefixes that freeze every parameter, raise
    ConfigError naming the nearest valid prefixes.
    """
    prefixes = [p.strip().rstrip(".") for p in prefixes]
    if not prefixes:
        return []
    valid = module_prefixes(model)
    for prefix in prefixes:
        if prefix not in valid:
            top = [p for p in valid if "." not in p]
            near = difflib.get_close_matches(prefix, valid, n=3, cutoff=0.5) or top
            raise ConfigError(f"train.freeze: {prefix!r} names no parameter of the model; "
                              f"nearest valid prefixes: {', '.join(near)}")
    params = dict(model.named_parameters())
    frozen = [name for name in params if any(_matches(name, p) for p in prefixes)]
    if len(frozen) == len(params):
        raise ConfigError(f"train.freeze {prefixes} freezes every parameter: nothing left to train")
    for name in frozen:
        params[name].requires_grad_(False)
    return [module for name, module in model.named_modules()
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and any(_matches(name, p) for p in prefixes)]


def hold_norms(norms: Sequence[nn.Module]) -> None:
    """Put frozen norm layers back into eval mode (after ``model.train()``)."""
    for module in norms:
        module.eval()
