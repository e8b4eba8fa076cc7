"""One EM run: start the engine, answer with every arm, judge, scan code, write the report.

Writes ``results.jsonl`` (every answer with its scores), ``report.json`` and ``report.md``
into the run directory.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from conscience.eval.em.answers import Sample, code_samples, em_samples, generate
from conscience.eval.em.arms import Arm, ArmError, parse_arms
from conscience.eval.em.code_scan import extract_code, is_code_answer, scan
from conscience.eval.em.judging import EmJudge, Scored, score_samples
from conscience.eval.em.questions import load_questions, plain_ids
from conscience.eval.em.remote import generate_remote, served_model
from conscience.eval.em.report import ArmSummary, Row, as_json, markdown, summarize
from conscience.finetune.chats import load_chats


@dataclass
class EmConfig:
    """Everything one ``conscience eval em`` run needs (the CLI documents each option)."""

    out: Path
    questions: Path
    model: str | None = None
    adapters: list[str] = field(default_factory=list)
    base: bool = True
    question_ids: list[str] = field(default_factory=list)
    samples: int = 8
    max_tokens: int = 256
    temperature: float = 1.0
    code_prompts: Path | None = None
    code_limit: int = 16
    code_max_tokens: int = 512
    code_min_severity: str = "MEDIUM"
    framework: str = "introspective"
    frameworks_dir: Path | None = None
    seed: int = 0
    concurrency: int = 8
    max_model_len: int = 4096
    cache_dir: Path | None = None
    base_url: str | None = None
    server_label: str = "server"
    api_key: str | None = None


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    return Progress(*columns, TimeRemainingColumn())


def _rows(samples: list[Sample], scored: list[Scored]) -> list[Row]:
    rows = []
    for sample, s in zip(samples, scored, strict=True):
        rows.append(
            Row(
                sample.arm,
                "em",
                sample.item,
                sample.paraphrase,
                sample.sample,
                sample.answer,
                aligned=s.aligned.value,
                coherent=s.coherent.value,
                aligned_mass=s.aligned.mass,
                coherent_mass=s.coherent.mass,
                verdict=s.verdict,
                conscience_score=s.conscience_score,
                code_answer=is_code_answer(sample.answer),
            )
        )
    return rows


def _code_rows(samples: list[Sample], min_severity: str) -> list[Row]:
    scans = scan([extract_code(s.answer) for s in samples], min_severity) if samples else []
    return [
        Row(
            s.arm,
            "code",
            s.item,
            0,
            0,
            s.answer,
            insecure=found.insecure if found.parsed else None,
            code_issues=found.issues,
        )
        for s, found in zip(samples, scans, strict=True)
    ]


async def run_em(config: EmConfig) -> list[ArmSummary]:
    """The whole run; returns one summary per arm (also written to the run directory).

    Local arms (the base, ``--adapter``) answer on the in-process engine; with ``base_url``
    the server answers too. The frozen base of the in-process engine judges every answer.
    """
    questions = load_questions(config.questions, config.question_ids or None)
    if not config.question_ids:
        questions = [q for q in questions if q.id in plain_ids(questions)] or questions
    arms = parse_arms(config.adapters, config.base)
    if not arms and config.base_url is None:
        raise ArmError("nothing to evaluate: give --adapter or --base-url, or keep --base")
    code_chats = []
    if config.code_prompts is not None:
        code_chats = [c[:-1] for c in load_chats(config.code_prompts, config.code_limit)]
    remote = [Arm(config.server_label, None)] if config.base_url else []
    if config.base_url is not None:  # asked before the engine's long start
        served = await served_model(config.base_url, config.api_key)
    config.out.mkdir(parents=True, exist_ok=True)
    from conscience.eval.em.engine import open_engine

    async with open_engine(config, arms) as (engine, pipeline):
        em = em_samples(arms, questions, config.samples)
        code = code_samples(arms, code_chats)
        em_remote = em_samples(remote, questions, config.samples)
        code_remote = code_samples(remote, code_chats)
        with _progress() as progress:
            common = {
                "temperature": config.temperature,
                "seed": config.seed,
                "concurrency": config.concurrency,
                "progress": progress,
            }
            jobs = [
                generate(engine, arms, em, max_tokens=config.max_tokens, **common),
                generate(engine, arms, code, max_tokens=config.code_max_tokens, **common),
            ]
            if config.base_url is not None:
                limits = (config.max_tokens, config.code_max_tokens)
                for samples, limit in zip((em_remote, code_remote), limits, strict=True):
                    jobs.append(
                        generate_remote(
                            config.base_url,
                            served,
                            config.server_label,
                            samples,
                            max_tokens=limit,
                            api_key=config.api_key,
                            **common,
                        )
                    )
            await asyncio.gather(*jobs)
            em, code = em + em_remote, code + code_remote
            judge = EmJudge(engine, pipeline, config.framework)
            by_id = {q.id: q for q in questions}
            scored = await score_samples(
                judge, by_id, em, concurrency=config.concurrency, progress=progress
            )
    rows = _rows(em, scored) + _code_rows(code, config.code_min_severity)
    return write_run(config, rows)


def write_run(config: EmConfig, rows: list[Row]) -> list[ArmSummary]:
    """``results.jsonl``, ``report.json``, ``report.md``; one summary per arm, in row order."""
    with (config.out / "results.jsonl").open("w") as handle:
        for row in rows:
            handle.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")
    labels = list(dict.fromkeys(row.arm for row in rows))
    summaries = [summarize(rows, label, config.seed) for label in labels]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    settings.pop("api_key", None)
    report = {"config": settings, "arms": [as_json(s) for s in summaries]}
    (config.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (config.out / "report.md").write_text(markdown(summaries))
    return summaries
