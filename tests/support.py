"""Shared test helpers: the tiny model's served name and a scripted engine for branch tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from app.engine import Adapter, SamplingConfig, TextDelta

TINY_NAME = "tiny"


class ScriptedEngine:
    """A scripted stand-in for ``app.engine.Engine``, for unit tests of pipeline branches.

    ``answers`` are returned in order by ``stream`` (one word per piece); ``verdicts`` are the
    probability dicts (or exceptions to raise, or a delay in seconds) ``choose`` returns.
    """

    model_name = "scripted"
    max_model_len = 256

    def __init__(self, answers: list[str], verdicts: list[object]):
        self.answers = list(answers)
        self.verdicts = list(verdicts)
        self.calls: list[tuple[str, Adapter | None]] = []

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        return [len(w) for m in messages for w in m["content"].split()] + [0]

    def token_count(self, text: str) -> int:
        return len(text.split())

    def truncate(self, text: str, max_tokens: int) -> str:
        return " ".join(text.split()[:max_tokens])

    async def stream(
        self, request_id: str, prompt_ids: list[int], sampling: SamplingConfig, adapter
    ) -> AsyncIterator[TextDelta]:
        self.calls.append((request_id, adapter))
        words = self.answers.pop(0).split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield TextDelta(word if i == 0 else " " + word, i + 1, "stop" if last else None)

    async def choose(self, request_id, prompt_ids, choices) -> dict[str, float]:
        self.calls.append((request_id, None))
        verdict = self.verdicts.pop(0)
        if isinstance(verdict, BaseException):
            raise verdict
        if isinstance(verdict, float):
            await asyncio.sleep(verdict)
            return {"ethical": 1.0, "neutral": 0.0, "unethical": 0.0}
        return verdict  # type: ignore[return-value]

    async def load_adapter(self, adapter: Adapter) -> None:
        return None

    async def unload_adapter(self, adapter: Adapter) -> None:
        return None

    async def check_health(self) -> None:
        return None
