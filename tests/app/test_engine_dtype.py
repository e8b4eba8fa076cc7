"""``dtype=auto`` on a CPU: the checkpoint's bfloat16 only where the CPU computes it natively."""

from __future__ import annotations

import torch

from app.settings import Settings
from app.vllm_engine import engine_args, native_dtype


def _native_bf16() -> bool:
    caps = torch.cpu.get_capabilities()
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16") or caps.get("bf16"))


def test_an_explicit_dtype_is_kept():
    for dtype in ("bfloat16", "float16", "float32"):
        assert native_dtype(dtype) == dtype


def test_auto_is_float32_where_bfloat16_would_be_emulated(tmp_path):
    expected = "auto" if _native_bf16() else "float32"
    assert native_dtype("auto") == expected
    assert engine_args(Settings(), tmp_path, "m").dtype == expected
    assert engine_args(Settings(dtype="bfloat16"), tmp_path, "m").dtype == "bfloat16"
