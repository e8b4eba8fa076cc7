"""Judge dev rows on the in-process engine exactly as the server does, keeping the features.

For every (row, framework) the judge's prompt is built by the server's own code
(``app.conscience.prompts.review_prompt_ids``) and the engine returns the exact first-token
log-probabilities of the label variants plus up to 128 candidate read-out tokens (label words
of every built-in set and common answer openers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from app.conscience.calibration import features_value
from app.conscience.frameworks import Framework
from app.conscience.labels import BUILTIN_LABEL_SETS, MAX_SCORED_TOKENS
from app.conscience.prompts import review_prompt_ids
from app.conscience.verdict import Judge
from app.engine import Engine
from app.settings import ReviewLayout
from conscience.eval.dataset import EvalItem

OPENERS = [
    "I",
    "The",
    "It",
    "This",
    "As",
    "Sorry",
    "Sure",
    "Certainly",
    "Absolutely",
    "Not",
    "Never",
    "Definitely",
    "Safe",
    "Unsafe",
    "Harm",
    "Harmful",
    "Ethical",
    "Unethical",
    "Neutral",
    "Answer",
    "Based",
    "In",
    "Your",
    "My",
    "Here",
    "Okay",
    "Well",
    "Unfortunately",
    "However",
    "While",
    "Although",
    "Thank",
    "To",
    "A",
    "An",
    "Of",
    "Please",
    "We",
    "You",
    "He",
    "She",
    "They",
    "Good",
    "Bad",
    "Dangerous",
    "Illegal",
    "Legal",
    "Maybe",
    "Possibly",
    "Probably",
    "Correct",
    "Incorrect",
    "True",
    "False",
    "Right",
    "Wrong",
    "None",
    "Nothing",
    "Both",
    "Partially",
    "Help",
    "Helpful",
    "Refuse",
    "Reply",
    "Response",
    "Assistant",
    "User",
    "Question",
    "Note",
    "Warning",
    "Caution",
]


@dataclass
class Judged:
    """Dev rows judged under one framework."""

    framework: Framework
    raw: np.ndarray
    features: np.ndarray
    token_ids: list[int]
    tokens: list[str]


def candidate_ids(engine: Engine, judge: Judge) -> list[int]:
    """The judge's label ids, then other label words and openers, at most 128 ids."""
    ids = list(judge.token_ids)
    words = [o.word for s in BUILTIN_LABEL_SETS.values() for o in s.options] + OPENERS
    for word in words:
        for text in (word, " " + word, word.lower(), " " + word.lower()):
            first = engine.encode_text(text)[:1]
            if first and first[0] not in ids:
                ids.append(first[0])
    return ids[:MAX_SCORED_TOKENS]


async def judge_rows(
    engine: Engine,
    framework: Framework,
    layout: ReviewLayout,
    items: Sequence[EvalItem],
    max_input_tokens: int,
    concurrency: int = 8,
) -> Judged:
    """Raw question scores and read-out features of every row (answer rows only)."""
    judge = Judge(framework, layout, engine.encode_text, engine.decode_token)
    ids = candidate_ids(engine, judge)
    raw = np.zeros(len(items))
    features = np.zeros((len(items), len(ids)))
    gate = asyncio.Semaphore(concurrency)

    async def one(row: int, item: EvalItem) -> None:
        assert item.answer is not None
        prompt = review_prompt_ids(
            engine, framework, layout, item.chat(), item.answer, max_input_tokens
        )
        async with gate:
            first = await engine.first_token_logprobs(f"cal-{framework.name}-{row}", prompt, ids)
        logprobs = first.logprobs
        raw[row] = judge.judge(logprobs, None).raw_score
        features[row] = [features_value(logprobs, t) for t in ids]
        progress.advance(task)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn()) as progress:
        task = progress.add_task(f"judging ({framework.name})", total=len(items))
        await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    tokens = [engine.decode_token(t) for t in ids]
    return Judged(framework, raw, features, ids, tokens)
