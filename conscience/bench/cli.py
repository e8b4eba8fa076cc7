"""``conscience bench``: plain vLLM and our server (modes off, flag, rewrite), side by side.

Writes ``OUT/bench.json`` (after every row), ``OUT/table.txt``, ``OUT/latency.png`` and one
log per server under ``OUT/logs/``. Exits 1 when any request failed.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from conscience.bench.load import read_prompts
from conscience.bench.report import BenchConfig, BenchResult, Row, add_ratios, plot, table
from conscience.bench.runner import TRAFFICS, plan, run_phase
from conscience.bench.servers import EngineConfig, ServerError

DEFAULT_PROMPTS = Path(__file__).resolve().parents[2] / "benchmarks" / "prompts"
QUICK = {"concurrency": "1,2", "requests": 4, "max_tokens": 8}
FULL = {"concurrency": "1,4,16", "requests": 48, "max_tokens": 64}

bench_app = typer.Typer(add_completion=False)
console = Console(stderr=True)


def _resolve_model(model: str | None) -> Path:
    from app.models import ModelSourceError, resolve_model
    from app.settings import Settings

    try:
        return resolve_model(model, Settings().cache_dir, progress=console.print)
    except ModelSourceError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise typer.BadParameter("concurrency values must be >= 1")
    return values


def bench(
    model: Annotated[
        str | None,
        typer.Option(
            help="Model dir or named model. Default: Qwen2.5-Coder-0.5B-Instruct, prepared."
        ),
    ] = None,
    concurrency: Annotated[
        str | None, typer.Option(help="Comma-separated concurrency levels. [default: 1,4,16]")
    ] = None,
    requests: Annotated[
        int | None, typer.Option(min=1, help="Requests per row. [default: 48]")
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Tokens generated per answer. [default: 64]")
    ] = None,
    prompts: Annotated[
        Path, typer.Option(help="Directory with clean.jsonl and flagged.jsonl.")
    ] = DEFAULT_PROMPTS,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("var/bench"),
    review_layouts: Annotated[
        str,
        typer.Option(
            help="Comma-separated layouts; the first runs every mode, extra ones mode flag on "
            "clean traffic."
        ),
    ] = "auto,framework_first",
    quick: Annotated[
        bool, typer.Option(help="Small CI run: concurrency 1,2; 4 requests; 8 tokens.")
    ] = False,
    threads: Annotated[int, typer.Option(min=1, help="OMP_NUM_THREADS of every server.")] = (
        os.cpu_count() or 1
    ),
    kv_cache_gib: Annotated[int, typer.Option(min=1, help="VLLM_CPU_KVCACHE_SPACE.")] = 1,
    block_size: Annotated[
        int, typer.Option(min=1, help="KV block size of every server (ours' CPU default).")
    ] = 32,
    max_model_len: Annotated[int, typer.Option(min=64, help="Context length.")] = 2048,
    dtype: Annotated[str, typer.Option(help="Engine dtype.")] = "auto",
    request_timeout_s: Annotated[float, typer.Option(help="Per request.")] = 300.0,
    start_timeout_s: Annotated[float, typer.Option(help="Per server start.")] = 600.0,
) -> None:
    """Measure plain vLLM and the conscience (off, flag, rewrite) on clean and flagged traffic."""
    sizes = QUICK if quick else FULL
    model_dir = _resolve_model(model)
    engine = EngineConfig(
        model_dir=model_dir,
        served_name=model_dir.name,
        max_model_len=max_model_len,
        dtype=dtype,
        threads=threads,
        kv_cache_gib=kv_cache_gib,
        block_size=block_size,
    )
    config = BenchConfig(
        model=str(model_dir),
        served_name=engine.served_name,
        concurrency=_int_list(concurrency or sizes["concurrency"]),
        requests=requests or sizes["requests"],
        max_tokens=max_tokens or sizes["max_tokens"],
        review_layouts=[part.strip() for part in review_layouts.split(",") if part.strip()],
        block_size=block_size,
        threads=threads,
        kv_cache_gib=kv_cache_gib,
        max_model_len=max_model_len,
        dtype=dtype,
        max_lora_rank=engine.max_lora_rank,
        max_loras=engine.max_loras,
        cpu_count=os.cpu_count() or 1,
        request_timeout_s=request_timeout_s,
        start_timeout_s=start_timeout_s,
    )
    _check_layouts(config.review_layouts)
    traffic = {kind: read_prompts(prompts / f"{kind}.jsonl") for kind in TRAFFICS}
    result = BenchResult(started_at=datetime.now(UTC), config=config)
    _run(result, engine, traffic, out)


bench_app.callback(invoke_without_command=True)(bench)  # mounts as ``conscience bench ...``


def _check_layouts(layouts: list[str]) -> None:
    from app.settings import ReviewLayout

    known = {layout.value for layout in ReviewLayout}
    if not layouts or not set(layouts) <= known:
        raise typer.BadParameter(f"review layouts must be among {sorted(known)}")


def _run(result: BenchResult, engine: EngineConfig, traffic: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "bench.json"

    def on_row(row: Row) -> None:
        result.rows.append(row)
        add_ratios(result.rows)
        json_path.write_text(result.model_dump_json(indent=2))
        console.print(
            f"  {row.traffic:8} {row.target:12} {row.review_layout or '':16} c={row.concurrency:<3}"
            f" {row.requests_per_s:6.2f} req/s  p50 {row.latency_ms.p50} ms  errors {row.errors}",
            soft_wrap=True,
        )

    try:
        for phase in plan(engine, result.config.review_layouts, out):
            run_phase(phase, result.config, traffic, out / "logs", on_row, _say)
    except ServerError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    _finish(result, out)


def _say(text: str) -> None:
    console.print(text, soft_wrap=True)


def _finish(result: BenchResult, out: Path) -> None:
    wide = Console(width=260, record=True)
    wide.print(table(result))
    (out / "table.txt").write_text(wide.export_text())
    plot(result, out / "latency.png")
    console.print(f"Wrote {out / 'bench.json'}, {out / 'table.txt'}, {out / 'latency.png'}")
    errors = sum(r.errors for r in result.rows)
    if errors:
        console.print(f"[red]{errors} requests failed[/red]: see first_error in bench.json")
        raise typer.Exit(1)


if __name__ == "__main__":
    bench_app()
