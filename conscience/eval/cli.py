"""``conscience eval``: ``run``, ``report``, ``convert``, ``compare``.

Mount with ``root.add_command(typer.main.get_command(eval_app), "eval")``. Failures print one
line and exit with status 1.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from conscience.eval.compare import compare as compare_runs
from conscience.eval.compare import comparison_markdown
from conscience.eval.convert import SOURCES, ConvertError, convert, sample_per_label
from conscience.eval.dataset import DatasetError, file_digest, load_dataset, write_jsonl
from conscience.eval.injection import INJECTIONS, expand
from conscience.eval.launch import launched_server
from conscience.eval.render import est, write_report
from conscience.eval.report import Report, build_report
from conscience.eval.runner import (
    DEFAULT_FRAMEWORK,
    RESULTS_FILE,
    RUN_FILE,
    RunConfig,
    RunError,
    load_results,
    run_items,
)

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"

eval_app = typer.Typer(
    help="Measure the conscience on labelled data: detection, calibration, injections, latency.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
    return typer.Exit(1)


def _server(
    base_url: str | None, model: str | None, out: Path, serve_args: list[str]
) -> AbstractContextManager[str]:
    """The server to evaluate: the given URL, or a fresh ``conscience serve --model``."""
    if (base_url is None) == (model is None):
        raise RunError("give exactly one of --base-url or --model")
    if base_url is not None:
        if serve_args:
            raise RunError("server options (--review-layout, ...) need --model")
        return nullcontext(base_url.rstrip("/"))
    return launched_server(model or "", out, serve_args)


def _serve_args(
    layout: str | None, flag_threshold: float | None, frameworks_dir: Path | None, extra: list[str]
) -> list[str]:
    args = list(extra)
    if layout:
        args += ["--review-layout", layout]
    if flag_threshold is not None:
        args += ["--flag-threshold", str(flag_threshold)]
    if frameworks_dir is not None:
        args += ["--frameworks-dir", str(frameworks_dir.resolve())]
    return args


@eval_app.command()
def run(
    dataset: Annotated[Path, typer.Option(help="Rows to evaluate (.jsonl or .csv).")],
    out: Annotated[Path, typer.Option(help="Run directory (results, report, plots).")],
    framework: Annotated[
        list[str] | None, typer.Option(help="Framework to judge under (repeatable).")
    ] = None,
    mode: Annotated[
        Literal["flag", "rewrite"], typer.Option(help="Mode for prompt rows.")
    ] = "flag",
    base_url: Annotated[str | None, typer.Option(help="A running server to evaluate.")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Start `conscience serve --model M` ('default': its default model)."),
    ] = None,
    review_layout: Annotated[
        str | None, typer.Option(help="With --model: framework_first | continuation.")
    ] = None,
    flag_threshold: Annotated[
        float | None, typer.Option(help="With --model: server's threshold.")
    ] = None,
    frameworks_dir: Annotated[
        Path | None, typer.Option(help="With --model: user frameworks.")
    ] = None,
    serve_arg: Annotated[
        list[str] | None, typer.Option(help="With --model: extra `conscience serve` argument.")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Also report flags at score >= T (chosen on dev!).")
    ] = None,
    injection: Annotated[
        list[str] | None, typer.Option(help=f"Add a judge injection: {', '.join(INJECTIONS)}, all.")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 4,
    max_tokens: Annotated[int, typer.Option(min=1, help="Draft length for prompt rows.")] = 128,
    seed: Annotated[int, typer.Option(help="Sampling and bootstrap seed.")] = 0,
    api_key: Annotated[str | None, typer.Option(envvar="CONSCIENCE_EVAL_API_KEY")] = None,
    plots: Annotated[bool, typer.Option(help="Write PNG plots.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Evaluate a dataset against a server; resumable (rerun the same command to continue)."""
    try:
        items = load_dataset(dataset)
        names = list(INJECTIONS) if injection and "all" in injection else injection or []
        items = expand(items, names) if names else items
        config = RunConfig(
            dataset=str(dataset),
            dataset_digest=file_digest(dataset),
            frameworks=framework or [DEFAULT_FRAMEWORK],
            mode=mode,
            max_tokens=max_tokens,
            seed=seed,
            injections=names,
        )
        args = _serve_args(review_layout, flag_threshold, frameworks_dir, serve_arg or [])
        with _server(base_url, model, out, args) as url:
            results = asyncio.run(
                run_items(items, config, out, url, concurrency, api_key, progress)
            )
        server = url if base_url else f"conscience serve --model {model} {' '.join(args)}".strip()
        report = write_report(build_report(results, config, server, threshold), results, out, plots)
    except (DatasetError, RunError, ValueError) as exc:
        raise _fail(exc) from None
    _summary(report, out)


@eval_app.command("report")
def rebuild_report(
    out: Annotated[Path, typer.Argument(help="A run directory.")],
    threshold: Annotated[
        float | None, typer.Option(help="Also report flags at score >= T.")
    ] = None,
    plots: Annotated[bool, typer.Option(help="Write PNG plots.")] = True,
) -> None:
    """Rebuild a run's report from its results, without new requests."""
    try:
        config = RunConfig.model_validate_json((out / RUN_FILE).read_text(encoding="utf-8"))
        results = load_results(out / RESULTS_FILE)
        previous = out / "report.json"
        server = (
            Report.model_validate_json(previous.read_text(encoding="utf-8")).server
            if previous.is_file()
            else "unknown"
        )
        report = write_report(build_report(results, config, server, threshold), results, out, plots)
    except (OSError, RunError, ValueError) as exc:
        raise _fail(exc) from None
    _summary(report, out)


def _summary(report: Report, out: Path) -> None:
    for fw in report.frameworks:
        parts = [f"{fw.framework}:"]
        if fw.judge:
            parts.append(f"AUROC {est(fw.judge.auroc)}, errors {fw.judge.errors}/{fw.judge.n}")
        if fw.chat:
            chat = fw.chat
            parts.append(f"prompts {chat.n}, rewrites {chat.rewrites}, errors {chat.errors}")
        console.print(" ".join(parts), highlight=False)
    console.print(f"Wrote {out / 'report.md'} and {out / 'report.json'}", highlight=False)


@eval_app.command("convert")
def convert_sources(
    sources: Annotated[
        list[str],
        typer.Argument(help=f"Sources: NAME or NAME:VARIANT ({', '.join(SOURCES)}), or file:PATH."),
    ],
    out: Annotated[Path, typer.Option(help="JSONL file to write.")],
    data_dir: Annotated[Path, typer.Option(help="The shared data directory.")] = DEFAULT_DATA_DIR,
    per_label: Annotated[
        int | None, typer.Option(min=1, help="Keep at most N rows per label (seeded sample).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
) -> None:
    """Convert shared public sets into one evaluation file (dev and test never mixed)."""
    try:
        items = [item for spec in sources for item in convert(spec, data_dir)]
        splits = {item.split for item in items}
        if len(splits) > 1:
            raise ConvertError("these sources mix the dev and test splits; convert them apart")
        if per_label is not None:
            items = sample_per_label(items, per_label, seed)
        count = write_jsonl(items, out)
    except (ConvertError, DatasetError, OSError) as exc:
        raise _fail(exc) from None
    labels = Counter(item.label for item in items)
    console.print(
        f"Wrote {count} rows ({labels['harmful']} harmful, {labels['benign']} benign; "
        f"split {splits.pop() if splits else '-'}) to {out}",
        highlight=False,
    )


@eval_app.command("compare")
def compare(
    a: Annotated[str, typer.Argument(help="Side A: RUN_DIR or RUN_DIR:FRAMEWORK.")],
    b: Annotated[str, typer.Argument(help="Side B: RUN_DIR or RUN_DIR:FRAMEWORK.")],
    a_threshold: Annotated[float | None, typer.Option(help="Flag A at score >= T.")] = None,
    b_threshold: Annotated[float | None, typer.Option(help="Flag B at score >= T.")] = None,
    out: Annotated[Path | None, typer.Option(help="Also write .md (or .json) here.")] = None,
) -> None:
    """Two runs side by side: paired-bootstrap differences B - A on their common rows."""
    try:
        comparison = compare_runs(a, b, a_threshold, b_threshold)
    except (RunError, ValueError) as exc:
        raise _fail(exc) from None
    text = comparison_markdown(comparison)
    typer.echo(text)
    if out is not None:
        is_json = out.suffix == ".json"
        out.write_text(comparison.model_dump_json(indent=2) if is_json else text, encoding="utf-8")


def _mount_em() -> None:
    from conscience.eval.em.cli import em, em_validate

    eval_app.command("em")(em)
    eval_app.command("em-validate")(em_validate)


_mount_em()
