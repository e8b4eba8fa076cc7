"""Shared test helpers: the tiny model's served name and a scripted engine for branch tests."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence

from app.engine import Adapter, FirstToken, SamplingConfig, TextDelta

TINY_NAME = "tiny"


def judged(harmful: float, neutral: float = 0.0) -> dict[str, float]:
    """Label-word probabilities meaning P(harmful) = ``harmful`` under every built-in label set."""
    benign = 1.0 - harmful - neutral
    return {
        "yes": harmful, "unsafe": harmful, "unethical": harmful,
        "no": benign + neutral, "safe": benign + neutral, "ethical": benign, "neutral": neutral,
    }  # fmt: skip


class ScriptedEngine:
    """A scripted stand-in for ``app.engine.Engine``, for unit tests of pipeline branches.

    ``answers`` are returned in order by ``stream`` (one word per piece); ``verdicts`` are
    label-word probability dicts (see ``judged``), or exceptions to raise, or a delay in
    seconds, that ``first_token_logprobs`` turns into the log-probabilities of the asked ids.
    Its tokenizer gives each whitespace-separated word one id; a chat is each message's words
    followed by the end-of-turn id 0.
    """

    model_name = "scripted"
    max_model_len = 256
    dtype = None

    def __init__(self, answers: list[str], verdicts: list[object]):
        self.answers = list(answers)
        self.verdicts = list(verdicts)
        self.calls: list[tuple[str, Adapter | None]] = []
        self.vocab: dict[str, int] = {}

    def encode_text(self, text: str) -> list[int]:
        return [self.vocab.setdefault(w, len(self.vocab) + 1) for w in text.split()]

    def decode_token(self, token_id: int) -> str:
        return next((w for w, i in self.vocab.items() if i == token_id), "")

    def special_token_ids(self) -> frozenset[int]:
        return frozenset({0})

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        return [t for m in messages for t in (*self.encode_text(m["content"]), 0)]

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

    async def first_token_logprobs(self, request_id, prompt_ids, token_ids) -> FirstToken:
        self.calls.append((request_id, None))
        verdict = self.verdicts.pop(0)
        if isinstance(verdict, BaseException):
            raise verdict
        if isinstance(verdict, float):
            await asyncio.sleep(verdict)
            verdict = judged(0.0)
        words = {tid: self.decode_token(tid).strip().lower() for tid in token_ids}
        found = [w for w in words.values() if w in verdict]
        return FirstToken(
            {
                tid: math.log(verdict[w] / found.count(w)) if verdict[w] > 0 else -math.inf
                for tid, w in words.items()
                if w in verdict
            }
        )

    async def load_adapter(self, adapter: Adapter) -> None:
        return None

    async def unload_adapter(self, adapter: Adapter) -> None:
        return None

    async def check_health(self) -> None:
        return None
