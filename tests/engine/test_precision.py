"""The precision that auto and explicit choices resolve to."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deltalearn.engine import precision as precision_module
from deltalearn.engine.precision import cpu_bf16_pays_off, resolve_precision


def test_precision_choices() -> None:
    assert resolve_precision("fp32", "cpu").autocast_enabled is False
    fp16 = resolve_precision("fp16", "cpu", nn.Conv2d(1, 1, 1))
    assert fp16.use_scaler and fp16.channels_last
    assert not resolve_precision("bf16", "cpu", nn.Linear(1, 1)).channels_last  # no conv: no layout change
    assert resolve_precision("fp32", "cpu", nn.Conv2d(1, 1, 1)).channels_last  # oneDNN's fp32 convs: faster in it
    assert not resolve_precision("fp32", "cpu", nn.Linear(1, 1)).channels_last
    if cpu_bf16_pays_off():
        assert resolve_precision("auto", "cpu").dtype == torch.bfloat16
    else:
        assert resolve_precision("auto", "cpu").dtype == torch.float32
    with pytest.raises(ValueError, match="precision 'fp8'"):
        resolve_precision("fp8", "cpu")



@pytest.mark.parametrize(("amx", "bf16_seconds", "expected"),
                         [(True, 2.0, torch.bfloat16), (False, 2.0, torch.float32), (False, 0.5, torch.bfloat16)])
def test_auto_takes_bf16_on_cpu_where_it_pays_off(monkeypatch: pytest.MonkeyPatch, amx: bool, bf16_seconds: float,
                                                 expected: torch.dtype) -> None:
    # AVX-512 BF16 without AMX tiles may compute bf16 slower than fp32 (measured on a Xeon VM)
    monkeypatch.setattr(precision_module, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr(precision_module, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(precision_module, "_matmul_seconds",
                        lambda dtype: bf16_seconds if dtype == torch.bfloat16 else 1.0)
    precision_module.cpu_bf16_pays_off.cache_clear()
    try:
        auto = resolve_precision("auto", "cpu", nn.Conv2d(1, 1, 1))
    finally:
        precision_module.cpu_bf16_pays_off.cache_clear()
    assert auto.dtype == expected
    assert auto.channels_last  # on a CPU, convolutions run channels-last whatever the dtype
    assert resolve_precision("bf16", "cpu").dtype == torch.bfloat16  # asked for: given
