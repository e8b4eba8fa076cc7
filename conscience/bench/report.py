"""Benchmark results: pydantic models (the JSON), one rich table, a latency-vs-concurrency plot.

Ratios compare each row with plain vLLM (LoRA enabled, the same engine settings) on the same
traffic at the same concurrency: ``rps_vs_vllm`` > 1 is faster, ``p50_vs_vllm`` > 1 slower.
``p50_vs_off`` is the review's own price: a flag/rewrite row's p50 over mode ``off`` on the same
server, traffic and concurrency (free of what enabling LoRA costs).
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field
from rich.table import Table

from conscience.bench.load import Sample
from conscience.bench.scrape import Counters

BASELINE = "vllm"


class BenchConfig(BaseModel):
    """What was measured, and how."""

    model: str
    served_name: str
    concurrency: list[int] = Field(min_length=1)
    requests: int = Field(ge=1)
    max_tokens: int = Field(ge=1)
    review_layouts: list[str] = Field(min_length=1)
    block_size: int = Field(ge=1, description="KV block size of every server.")
    threads: int = Field(ge=1, description="OMP_NUM_THREADS of every server.")
    kv_cache_gib: int = Field(ge=1, description="VLLM_CPU_KVCACHE_SPACE of every server.")
    max_model_len: int = Field(ge=64)
    dtype: str
    max_lora_rank: int
    max_loras: int
    cpu_count: int
    request_timeout_s: float
    start_timeout_s: float


class Latency(BaseModel):
    """Milliseconds over the successful requests."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class Row(BaseModel):
    """One target at one concurrency on one kind of traffic."""

    traffic: str
    target: str = Field(description="vllm, vllm-nolora, or our mode: off, flag, rewrite.")
    review_layout: str | None = None
    concurrency: int
    requests: int
    errors: int
    first_error: str | None = None
    streamed: int
    wall_s: float
    requests_per_s: float
    output_tokens: int
    output_tokens_per_s: float
    latency_ms: Latency
    ttft_p50_ms: float | None = Field(None, description="Streamed requests only.")
    review_p50_ms: float | None = Field(None, description="Our review stage (server-measured).")
    actions: dict[str, int] = Field(default_factory=dict)
    review_prompt_tokens: float | None = Field(None, description="Mean review prompt length.")
    review_prefill_tokens: float | None = Field(
        None, description="Mean review prompt tokens not served from the prefix cache."
    )
    review_cache_hit: float | None = Field(
        None, description="Share of review prompt tokens served from the prefix cache."
    )
    prefix_cache_hit: float | None = Field(
        None, description="Engine-wide prefix-cache hit rate (vLLM's counters), all requests."
    )
    rps_vs_vllm: float | None = None
    p50_vs_vllm: float | None = None
    p50_vs_off: float | None = None
    load_avg: float | None = Field(
        None, description="The machine's 1-minute load average when the row finished."
    )


class BenchResult(BaseModel):
    """The JSON ``conscience bench`` writes."""

    started_at: datetime
    config: BenchConfig
    rows: list[Row] = Field(default_factory=list)


def _ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def summarize(
    traffic: str,
    target: str,
    layout: str | None,
    concurrency: int,
    samples: list[Sample],
    wall_s: float,
    counted: Counters,
) -> Row:
    """A row from one load run's samples and the server counters it moved."""
    ok = [s for s in samples if s.error is None]
    failed = [s for s in samples if s.error is not None]
    latencies = [s.latency_s for s in ok]
    ttfts = [s.ttft_s for s in ok if s.ttft_s is not None]
    reviews = [s.review_ms / 1000 for s in ok if s.review_ms]
    tokens = sum(s.output_tokens for s in ok)
    return Row(
        traffic=traffic,
        target=target,
        review_layout=layout,
        concurrency=concurrency,
        requests=len(samples),
        errors=len(failed),
        first_error=failed[0].error if failed else None,
        streamed=sum(s.stream for s in samples),
        wall_s=round(wall_s, 3),
        requests_per_s=round(len(ok) / wall_s, 3),
        output_tokens=tokens,
        output_tokens_per_s=round(tokens / wall_s, 2),
        latency_ms=Latency(p50=_ms(latencies, 50), p95=_ms(latencies, 95), p99=_ms(latencies, 99)),
        ttft_p50_ms=_ms(ttfts, 50),
        review_p50_ms=_ms(reviews, 50),
        actions=dict(Counter(s.action for s in ok if s.action)),
        load_avg=round(os.getloadavg()[0], 2),
        **_cache_figures(counted),
    )


def _cache_figures(c: Counters) -> dict[str, float | None]:
    def ratio(a: float, b: float, digits: int = 3) -> float | None:
        return round(a / b, digits) if b > 0 else None

    return {
        "review_prompt_tokens": ratio(c.review_prompt_tokens, c.reviews, 1),
        "review_prefill_tokens": ratio(
            c.review_prompt_tokens - c.review_cached_tokens, c.reviews, 1
        ),
        "review_cache_hit": ratio(c.review_cached_tokens, c.review_prompt_tokens),
        "prefix_cache_hit": ratio(c.cache_hits, c.cache_queries),
    }


def add_ratios(rows: list[Row]) -> None:
    """Fill each row's ratios to plain vLLM and to mode off on the same traffic, concurrency
    (and, for ``p50_vs_off``, layout: the same server)."""
    off = {(r.traffic, r.concurrency, r.review_layout): r for r in rows if r.target == "off"}
    for row in rows:
        same = off.get((row.traffic, row.concurrency, row.review_layout))
        if row.target in ("flag", "rewrite") and same and same.latency_ms.p50:
            row.p50_vs_off = _ratio(row.latency_ms.p50, same.latency_ms.p50)
    base = {(r.traffic, r.concurrency): r for r in rows if r.target == BASELINE}
    for row in rows:
        ref = base.get((row.traffic, row.concurrency))
        if ref is None:
            continue
        if ref.requests_per_s:
            row.rps_vs_vllm = round(row.requests_per_s / ref.requests_per_s, 3)
        row.p50_vs_vllm = _ratio(row.latency_ms.p50, ref.latency_ms.p50)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def label(row: Row) -> str:
    """``target`` or ``target/layout``."""
    return f"{row.target}/{row.review_layout}" if row.review_layout else row.target


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def table(result: BenchResult) -> Table:
    """The results, one row per (traffic, concurrency, target)."""
    cfg = result.config
    out = Table(
        title=f"{cfg.served_name}: {cfg.requests} requests x {cfg.max_tokens} tokens, "
        f"{cfg.threads} threads",
        caption="latency over all requests (half streamed); TTFT over streamed ones",
    )
    for name in ("traffic", "target", "conc", "req/s", "out tok/s", "p50 ms", "p95 ms"):
        out.add_column(name, justify="left" if name in ("traffic", "target") else "right")
    for name in ("p99 ms", "TTFT p50", "review p50", "review prefill", "review hit", "errors"):
        out.add_column(name, justify="right")
    for name in ("x vLLM req/s", "x vLLM p50", "x off p50", "load"):
        out.add_column(name, justify="right")
    out.add_column("actions")
    rows = sorted(result.rows, key=lambda r: (r.traffic, r.concurrency))
    for r in rows:
        out.add_row(
            r.traffic,
            label(r),
            str(r.concurrency),
            _num(r.requests_per_s, 2),
            _num(r.output_tokens_per_s, 1),
            _num(r.latency_ms.p50),
            _num(r.latency_ms.p95),
            _num(r.latency_ms.p99),
            _num(r.ttft_p50_ms),
            _num(r.review_p50_ms),
            _num(r.review_prefill_tokens),
            _pct(r.review_cache_hit),
            str(r.errors),
            _num(r.rps_vs_vllm, 2),
            _num(r.p50_vs_vllm, 2),
            _num(r.p50_vs_off, 2),
            _num(r.load_avg, 1),
            " ".join(f"{k}:{v}" for k, v in sorted(r.actions.items())),
        )
    return out


def plot(result: BenchResult, path: Path) -> None:
    """p50 (solid) and p95 (dotted) latency against concurrency, one panel per traffic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traffics = sorted({r.traffic for r in result.rows})
    colors = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys(map(label, result.rows)))}
    fig, axes = plt.subplots(1, len(traffics), figsize=(6 * len(traffics), 4.5), squeeze=False)
    for ax, traffic in zip(axes[0], traffics, strict=True):
        rows = [r for r in result.rows if r.traffic == traffic and r.latency_ms.p50 is not None]
        for name in dict.fromkeys(label(r) for r in rows):
            line = sorted((r for r in rows if label(r) == name), key=lambda r: r.concurrency)
            xs, color = [r.concurrency for r in line], colors[name]
            ax.plot(xs, [r.latency_ms.p50 for r in line], marker="o", color=color, label=name)
            ax.plot(xs, [r.latency_ms.p95 for r in line], linestyle=":", color=color)
        ax.set_title(f"{traffic} traffic")
        ax.set_xlabel("concurrency")
        ax.set_ylabel("latency ms (p50 solid, p95 dotted)")
        ax.set_xticks(result.config.concurrency)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"{result.config.served_name}, {result.config.max_tokens} tokens per answer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
