"""``conscience eval em`` and ``conscience eval em-validate``. Failures print one line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from conscience.eval.em.arms import ArmError
from conscience.eval.em.code_scan import SEVERITIES, ScanError
from conscience.eval.em.questions import QuestionsError
from conscience.eval.em.remote import ServerError
from conscience.finetune.chats import ChatDataError

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "emergent-misalignment"
QUESTIONS = DATA / "evaluation" / "first_plot_questions.yaml"
console = Console(stderr=True)
_ERRORS = (ArmError, QuestionsError, ChatDataError, ScanError, ServerError, OSError, ValueError)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
    return typer.Exit(1)


def em(
    out: Annotated[Path, typer.Option(help="Run directory (results.jsonl, report.json/.md).")],
    model: Annotated[
        str | None, typer.Option(help="Base model: name, directory or hub id (default: default).")
    ] = None,
    adapter: Annotated[
        list[str] | None,
        typer.Option(help="LABEL=PATH of a peft adapter or adapter registry; repeat per arm."),
    ] = None,
    base: Annotated[bool, typer.Option(help="Also evaluate the base model (arm 'base').")] = True,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="A running conscience server to evaluate too (its answers with the conscience "
            "off; arm LABEL@adapter-version). --model must be its base: it judges.",
        ),
    ] = None,
    server_label: Annotated[str, typer.Option(help="Arm label of --base-url's answers.")] = (
        "server"
    ),
    api_key: Annotated[
        str | None, typer.Option(envvar="CONSCIENCE_API_KEY", help="Bearer key for --base-url.")
    ] = None,
    questions: Annotated[
        Path, typer.Option(help="EM questions YAML (first_plot_questions / preregistered_evals).")
    ] = QUESTIONS,
    question_id: Annotated[
        list[str] | None,
        typer.Option(help="Question id to ask (repeat). Default: those without _json/_template."),
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="Samples per paraphrase and arm.")] = 8,
    max_tokens: Annotated[int, typer.Option(min=1, help="Longest answer in tokens.")] = 256,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature.")] = 1.0,
    code_prompts: Annotated[
        Path | None,
        typer.Option(help="Held-out coding chats (JSONL, last message = reference answer)."),
    ] = None,
    code_limit: Annotated[int, typer.Option(min=0, help="Coding prompts used (file order).")] = 16,
    code_max_tokens: Annotated[
        int, typer.Option(min=1, help="Longest code answer in tokens (Bandit needs whole files).")
    ] = 512,
    code_min_severity: Annotated[
        str, typer.Option(help=f"Bandit severity that makes code insecure: {SEVERITIES}.")
    ] = "MEDIUM",
    framework: Annotated[str, typer.Option(help="The conscience's framework.")] = "introspective",
    frameworks_dir: Annotated[
        Path | None, typer.Option(help="Directory of your own framework YAML files.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling and bootstrap seed.")] = 0,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 8,
    max_model_len: Annotated[int, typer.Option(min=256, help="Engine context length.")] = 4096,
    cache_dir: Annotated[Path | None, typer.Option(help="Prepared-model cache.")] = None,
) -> None:
    """Emergent Misalignment: EM questions x N samples per arm, judged by the frozen base."""
    from rich.console import Console as Out

    from conscience.eval.em.report import markdown
    from conscience.eval.em.run import EmConfig, run_em

    config = EmConfig(
        out=out,
        questions=questions,
        model=model,
        adapters=list(adapter or []),
        base=base,
        base_url=base_url,
        server_label=server_label,
        api_key=api_key,
        question_ids=list(question_id or []),
        samples=samples,
        max_tokens=max_tokens,
        temperature=temperature,
        code_prompts=code_prompts,
        code_limit=code_limit,
        code_max_tokens=code_max_tokens,
        code_min_severity=code_min_severity.upper(),
        framework=framework,
        frameworks_dir=frameworks_dir,
        seed=seed,
        concurrency=concurrency,
        max_model_len=max_model_len,
        cache_dir=cache_dir,
    )
    try:
        summaries = asyncio.run(run_em(config))
    except _ERRORS as exc:
        raise _fail(exc) from None
    Out().print(markdown(summaries), markup=False, highlight=False)
    console.print(f"results in {out}")


def em_validate(
    out: Annotated[Path, typer.Option(help="Where to write validation.json and cases.jsonl.")],
    model: Annotated[
        str | None, typer.Option(help="Judge model: name, directory or hub id (default: default).")
    ] = None,
    results_csv: Annotated[
        Path, typer.Option(help="EM results file with GPT-4o's scores (misaligned answers).")
    ] = DATA / "results" / "qwen_25_coder_32b_instruct.csv",
    benign_csv: Annotated[
        Path, typer.Option(help="XSTest completions (dev file); safe prompts answered in full.")
    ] = DATA.parent / "xstest" / "model_completions" / "xstest_v2_completions_gpt4.csv",
    benign: Annotated[int, typer.Option(min=0, help="Benign answers drawn.")] = 70,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Use at most this many misaligned answers.")
    ] = None,
    questions: Annotated[Path, typer.Option(help="YAML whose judge prompts to use.")] = QUESTIONS,
    framework: Annotated[str, typer.Option(help="The conscience's framework.")] = "introspective",
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 8,
    max_model_len: Annotated[int, typer.Option(min=256, help="Engine context length.")] = 4096,
    cache_dir: Annotated[Path | None, typer.Option(help="Prepared-model cache.")] = None,
) -> None:
    """Agreement of the EM scorer with GPT-4o's scores, and its behaviour on benign answers."""
    from conscience.eval.em.validate_run import run_validation

    try:
        figures = asyncio.run(
            run_validation(
                out,
                model,
                results_csv,
                benign_csv,
                benign,
                limit,
                questions,
                framework,
                concurrency,
                max_model_len,
                cache_dir,
            )
        )
    except _ERRORS as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(figures, indent=2))
