"""Conscience rounds during fine-tuning: the policy drafts, the frozen base reviews and rewrites.

One in-process engine (``conscience.inprocess``) runs on a background event loop next to the
training loop. Each round the current LoRA weights are loaded as a new adapter version (a new
vLLM name and id, as the server's hot-swap does), the server's own pipeline answers a few
prompts in ``rewrite`` mode with that adapter drafting, and every flagged draft comes back as a
``PairRecord`` (chosen = the base's rewrite, rejected = the draft).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine import Adapter
from app.pipeline import Outcome
from app.protocol import Action, ChatCompletionRequest
from app.records import PairRecord
from app.settings import Mode
from conscience.inprocess import InProcess, conscience_settings, in_process

Chat = list[dict[str, str]]


@dataclass
class RoundResult:
    """What one conscience round produced."""

    step: int
    drafted: int = 0
    flagged: int = 0
    failed: int = 0
    pairs: list[PairRecord] = field(default_factory=list)

    @property
    def flag_rate(self) -> float | None:
        return self.flagged / self.drafted if self.drafted else None


class ConscienceRounds:
    """Owns the background loop and the in-process conscience for one fine-tuning run."""

    def __init__(self, config: Any, model_dir: Path) -> None:
        self.config = config
        self.settings = conscience_settings(
            str(model_dir),
            mode=Mode.rewrite,
            framework=config.framework,
            frameworks_dir=config.frameworks_dir,
            flag_threshold=config.flag_threshold,
            max_lora_rank=max(16, config.lora_r),
            max_loras=2,
            max_model_len=config.max_model_len,
            cache_dir=config.cache_dir,
        )
        self._pairs: list[PairRecord] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._context: Any = None
        self._conscience: InProcess | None = None
        self._previous: Adapter | None = None

    def _run(self, coro: Coroutine) -> Any:
        future: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    def start(self) -> None:
        """Start the engine (tens of seconds)."""
        self._thread.start()
        self._context = in_process(self.settings, sink=self._collect)
        self._conscience = self._run(self._context.__aenter__())

    def close(self) -> None:
        """Stop the engine and the loop."""
        if self._context is not None:
            self._run(self._context.__aexit__(None, None, None))
            self._context = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def _collect(self, record: PairRecord) -> bool:
        self._pairs.append(record)
        return True

    def round(self, adapter_dir: Path, step: int, prompts: Sequence[Chat]) -> RoundResult:
        """Draft ``prompts`` with the adapter in ``adapter_dir``; return flags and pairs."""
        return self._run(self._round(adapter_dir, step, prompts))

    async def _round(self, adapter_dir: Path, step: int, prompts: Sequence[Chat]) -> RoundResult:
        assert self._conscience is not None
        engine, pipeline = self._conscience.engine, self._conscience.pipeline
        adapter = Adapter(f"finetune-step{step}", f"step{step}", adapter_dir, int_id=step + 1)
        await engine.load_adapter(adapter)
        previous = pipeline.policy.swap(adapter)
        if previous is not None:
            await engine.unload_adapter(previous)
        self._pairs.clear()
        result = RoundResult(step)
        outcomes = await asyncio.gather(
            *(self._answer(i, step, chat) for i, chat in enumerate(prompts)),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                result.failed += 1
                continue
            result.drafted += 1
            result.flagged += outcome.report.action is Action.rewritten
        result.pairs = list(self._pairs)
        return result

    async def _answer(self, index: int, step: int, chat: Chat) -> Outcome:
        pipeline = self._conscience.pipeline  # type: ignore[union-attr]
        request = ChatCompletionRequest(
            model=pipeline.engine.model_name,
            messages=chat,
            max_tokens=self.config.draft_max_tokens,
            temperature=1.0,
            seed=self.config.seed * 100_003 + step * 1_009 + index,
        )
        plan = pipeline.plan(request, f"finetune-{step}-{index}")
        final = None
        async with aclosing(pipeline.execute(plan)) as outcomes:
            async for item in outcomes:
                if isinstance(item, Outcome):
                    final = item
        assert final is not None
        return final
