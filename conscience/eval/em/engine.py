"""The engine of an EM run: the base, every arm's adapter resident, the conscience (flag)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from app.adapter_registry import ADAPTER_CONFIG
from app.settings import Mode
from conscience.eval.em.arms import Arm
from conscience.inprocess import conscience_settings, in_process


def _max_rank(arms: list[Arm]) -> int:
    ranks = [
        int(json.loads((a.adapter.path / ADAPTER_CONFIG).read_text()).get("r", 8))
        for a in arms
        if a.adapter is not None
    ]
    return max([16, *ranks])


@asynccontextmanager
async def open_engine(config: Any, arms: list[Arm]) -> AsyncIterator[tuple[Any, Any]]:
    """(engine, pipeline) for ``config`` (an ``EmConfig``) with every arm's adapter loaded."""
    settings = conscience_settings(
        config.model,
        max_model_len=config.max_model_len,
        max_lora_rank=_max_rank(arms),
        max_loras=max(1, sum(a.adapter is not None for a in arms)),
        mode=Mode.flag,
        framework=config.framework,
        frameworks_dir=config.frameworks_dir,
        cache_dir=config.cache_dir,
    )
    adapters = [a.adapter for a in arms if a.adapter is not None]
    async with in_process(settings, adapters) as conscience:
        yield conscience.engine, conscience.pipeline
