"""The precision that auto and explicit choices resolve to."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deltalearn.engine.precision import cpu_supports_bf16, resolve_precision


def test_precision_choices() -> None:
    assert resolve_precision("fp32", "cpu").autocast_enabled is False
    fp16 = resolve_precision("fp16", "cpu", nn.Conv2d(1, 1, 1))
    assert fp16.use_scaler and fp16.channels_last
    assert not resolve_precision("bf16", "cpu", nn.Linear(1, 1)).channels_last  # no conv: no layout change
    if cpu_supports_bf16():
        assert resolve_precision("auto", "cpu").dtype == torch.bfloat16
    else:
        assert resolve_precision("auto", "cpu").dtype == torch.float32
    with pytest.raises(ValueError, match="precision 'fp8'"):
        resolve_precision("fp8", "cpu")

