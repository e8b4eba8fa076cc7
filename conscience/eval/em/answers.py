"""Sample answers from every arm: EM questions (N each) and held-out coding prompts."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass

from rich.progress import Progress

from app.engine import Engine, SamplingConfig
from conscience.eval.em.arms import Arm
from conscience.eval.em.questions import Question


@dataclass
class Sample:
    """One answer to one prompt by one arm."""

    arm: str
    kind: str  # "em" or "code"
    item: str  # question id, or the coding prompt's index
    paraphrase: int
    sample: int
    messages: list[dict[str, str]]
    answer: str = ""
    finish_reason: str = ""


def em_samples(arms: Sequence[Arm], questions: Sequence[Question], n: int) -> list[Sample]:
    """``n`` samples of every paraphrase of every question, for every arm."""
    return [
        Sample(arm.label, "em", q.id, p, s, q.messages(p))
        for arm in arms
        for q in questions
        for p in range(len(q.paraphrases))
        for s in range(n)
    ]


def code_samples(arms: Sequence[Arm], prompts: Sequence[list[dict[str, str]]]) -> list[Sample]:
    """One answer per coding prompt (its chat without the reference answer), for every arm."""
    return [
        Sample(arm.label, "code", str(i), 0, 0, messages)
        for arm in arms
        for i, messages in enumerate(prompts)
    ]


def draw_seed(seed: int, sample: Sample) -> int:
    """The sampling seed of one prompt and sample number: the same in every arm (paired)."""
    key = f"{sample.kind}/{sample.item}/{sample.paraphrase}/{sample.sample}"
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % 2**31


async def generate(
    engine: Engine,
    arms: Sequence[Arm],
    samples: list[Sample],
    *,
    max_tokens: int,
    temperature: float,
    seed: int,
    concurrency: int,
    progress: Progress,
) -> None:
    """Fill ``answer`` of every sample.

    The seed depends on the prompt and sample number, not on the arm: every arm draws with the
    same seeds (paired samples), and a rerun repeats the answers.
    """
    adapters = {a.label: a.adapter for a in arms}
    gate = asyncio.Semaphore(concurrency)
    task = progress.add_task("answering", total=len(samples))

    async def one(index: int, sample: Sample) -> None:
        ids = engine.encode_chat(sample.messages)
        room = max(1, min(max_tokens, engine.max_model_len - len(ids) - 1))
        sampling = SamplingConfig(
            max_tokens=room, temperature=temperature, seed=draw_seed(seed, sample)
        )
        pieces = []
        async with gate:
            rid = f"em-{sample.kind}-{sample.arm}-{index}"
            stream = engine.stream(rid, ids, sampling, adapters[sample.arm])
            async with aclosing(stream):
                async for delta in stream:
                    pieces.append(delta.text)
                    sample.finish_reason = delta.finish_reason or sample.finish_reason
        sample.answer = "".join(pieces)
        progress.advance(task)

    await asyncio.gather(*(one(i, s) for i, s in enumerate(samples)))
