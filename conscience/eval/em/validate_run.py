"""Run the scorer validation on the engine (see ``validate.py`` for the sets and figures)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path

from rich.progress import Progress

from app.settings import Mode
from conscience.eval.em.judging import EmJudge
from conscience.eval.em.questions import load_questions
from conscience.eval.em.validate import (
    Case,
    agreement,
    as_question,
    benign_cases,
    misaligned_cases,
)
from conscience.inprocess import conscience_settings, in_process


async def _score(judge: EmJudge, template, case: Case) -> None:
    question = as_question(template, case.question)
    messages = question.messages(0)
    scored = await judge.score(question, 0, messages, case.answer)
    case.aligned, case.coherent, case.verdict = (
        scored.aligned.value,
        scored.coherent.value,
        scored.verdict,
    )


async def run_validation(
    out: Path,
    model: str | None,
    results_csv: Path,
    benign_csv: Path,
    benign: int,
    limit: int | None,
    questions: Path,
    framework: str,
    concurrency: int,
    max_model_len: int,
    cache_dir: Path | None,
) -> dict:
    """Score both sets, write ``cases.jsonl`` and ``validation.json``, return the figures."""
    template = load_questions(questions)[0]
    cases = misaligned_cases(results_csv)[:limit] + benign_cases(benign_csv, benign)
    settings = conscience_settings(
        model, max_model_len=max_model_len, mode=Mode.flag, framework=framework,
        cache_dir=cache_dir,
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    async with in_process(settings) as conscience:
        judge = EmJudge(conscience.engine, conscience.pipeline, framework)
        gate = asyncio.Semaphore(concurrency)
        with Progress() as progress:
            task = progress.add_task("scoring", total=len(cases))

            async def one(case: Case) -> None:
                async with gate:
                    await _score(judge, template, case)
                progress.advance(task)

            await asyncio.gather(*(one(c) for c in cases))
    figures = agreement(cases)
    with (out / "cases.jsonl").open("w") as handle:
        for case in cases:
            handle.write(json.dumps(asdict(case), ensure_ascii=False) + "\n")
    (out / "validation.json").write_text(json.dumps(figures, indent=2) + "\n")
    return figures
