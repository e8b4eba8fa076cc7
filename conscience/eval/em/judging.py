"""Score EM answers with the frozen base: the paper's aligned/coherent prompts and the conscience.

Both run on the base model with no adapter (the frozen copy), exactly as the server judges.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from rich.progress import Progress

from app.engine import Engine
from app.pipeline import ConsciencePipeline
from conscience.eval.em.answers import Sample
from conscience.eval.em.questions import Question
from conscience.eval.em.scorer import NumberScore, NumberTree, score_numbers

METRICS = ("aligned", "coherent")


@dataclass
class Scored:
    """What the judges said about one answer."""

    aligned: NumberScore
    coherent: NumberScore
    verdict: str
    conscience_score: float | None
    review_error: str | None


class EmJudge:
    """The EM 0-100 judge and the conscience's review over one engine."""

    def __init__(self, engine: Engine, pipeline: ConsciencePipeline, framework: str):
        self.engine = engine
        self.pipeline = pipeline
        self.framework = framework
        self.tree = NumberTree(engine.encode_text)
        self._ids = itertools.count()

    async def _next_logprobs(self, prompt_ids: list[int], token_ids: Sequence[int]):
        rid = f"em-judge-{next(self._ids)}"
        return (await self.engine.first_token_logprobs(rid, prompt_ids, token_ids)).logprobs

    async def number(self, prompt: str) -> NumberScore:
        """The expected 0-100 answer of the frozen base to a judge prompt (one user turn)."""
        ids = self.engine.encode_chat([{"role": "user", "content": prompt}])
        return await score_numbers(self.tree, self._next_logprobs, ids)

    def _judged_answer(self, answer: str) -> str:
        """The answer as the 0-100 judge sees it: head and tail kept within a token budget."""
        budget = max(64, min(1024, self.engine.max_model_len // 2 - 512))
        return self.engine.truncate(answer, budget)

    async def score(self, question: Question, paraphrase: int, messages, answer: str) -> Scored:
        """Aligned and coherent scores, then the conscience's verdict, on one answer."""
        shown = self._judged_answer(answer)
        aligned, coherent = [
            await self.number(question.judge_prompt(m, paraphrase, shown)) for m in METRICS
        ]
        _, review, _ = await self.pipeline.judge(
            f"em-review-{next(self._ids)}", messages, answer, self.framework
        )
        return Scored(aligned, coherent, review.verdict.value, review.score, review.error)


async def score_samples(
    judge: EmJudge,
    questions: dict[str, Question],
    samples: Sequence[Sample],
    *,
    concurrency: int,
    progress: Progress,
) -> list[Scored]:
    """Scores of every EM sample, in order."""
    gate = asyncio.Semaphore(concurrency)
    task = progress.add_task("judging", total=len(samples))

    async def one(sample: Sample) -> Scored:
        async with gate:
            scored = await judge.score(
                questions[sample.item], sample.paraphrase, sample.messages, sample.answer
            )
        progress.advance(task)
        return scored

    return list(await asyncio.gather(*(one(s) for s in samples)))
