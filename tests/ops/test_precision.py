"""ops.precision: 'auto' picks bf16 only where the device computes it natively."""
from __future__ import annotations

import warnings

import pytest
import torch

from facedis_aug.ops import precision as P


def _cpu(monkeypatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize("avx512_bf16, amx, want", [(False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16")])
def test_auto_picks_bf16_only_on_a_cpu_that_has_it(monkeypatch, avx512_bf16, amx, want):
    _cpu(monkeypatch, avx512_bf16, amx)
    assert P.native_bf16("cpu") is (want == "bf16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 'auto' never warns
        assert P.resolve_precision("auto", "cpu") == want


def test_explicit_bf16_is_kept_but_warned_about_without_native_support(monkeypatch):
    _cpu(monkeypatch, False, False)
    with pytest.warns(RuntimeWarning, match="gan.precision bf16 .*emulates"):
        assert P.resolve_precision("bf16", "cpu", what="gan.precision") == "bf16"
    _cpu(monkeypatch, True, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert P.resolve_precision("bf16", "cpu") == "bf16"
    assert P.resolve_precision("fp32", "cpu") == "fp32"


def test_bad_precisions_are_refused():
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        P.resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="x.precision = 'half'"):
        P.resolve_precision("half", "cpu", what="x.precision")


def test_autocast_factory_matches_the_resolved_precision():
    with P.autocast("fp32", "cpu")():
        assert not torch.is_autocast_enabled("cpu")
    with P.autocast("bf16", "cpu")():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
