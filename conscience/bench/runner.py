"""What runs where: servers one at a time, each serving the cells it can answer.

Traffic kinds are prompt sets (``clean.jsonl``: benign; ``flagged.jsonl``: requests a
conscience should object to). The small models we run are weak judges, so the prompts alone
would not decide what the conscience does; the flag threshold does, per server:
``--flag-threshold 1`` for clean traffic (flag only when P(unethical) = 1: nothing is flagged)
and ``--flag-threshold 0`` for flagged traffic (every draft is flagged, so mode ``rewrite``
always rewrites). Each row records the actions the server reported, so this is checked.

Servers, in order: plain vLLM without LoRA (clean traffic only: what enabling LoRA costs),
plain vLLM with LoRA (the baseline), ours with threshold 1 per review layout (the first layout
runs modes off/flag/rewrite; further layouts only mode flag, the one stage a layout changes),
ours with threshold 0 (flagged traffic, modes off/flag/rewrite).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from conscience.bench.load import Messages, request_bodies, run_load
from conscience.bench.report import BenchConfig, Row, summarize
from conscience.bench.scrape import read_counters
from conscience.bench.servers import (
    EngineConfig,
    ServerSpec,
    conscience_server,
    running,
    vllm_server,
)

TRAFFICS = ("clean", "flagged")
MODES = ("off", "flag", "rewrite")
CLEAN_THRESHOLD = 1.0
FLAGGED_THRESHOLD = 0.0


@dataclass(frozen=True)
class Cell:
    """One target on one traffic kind; ``target`` is vllm, vllm-nolora or our mode."""

    traffic: str
    target: str
    layout: str | None = None

    @property
    def mode(self) -> str | None:
        return None if self.target.startswith("vllm") else self.target


@dataclass(frozen=True)
class Phase:
    """One server (built when it starts, so its port is fresh) and the cells it serves."""

    server: Callable[[], ServerSpec]
    cells: tuple[Cell, ...]


def plan(engine: EngineConfig, layouts: list[str], out: Path) -> list[Phase]:
    """The servers to start, in order, with their cells (see the module docstring)."""

    def ours(layout: str, threshold: float) -> Callable[[], ServerSpec]:
        queue = out / "queue" / f"{layout}-t{threshold:g}.db"
        return partial(
            conscience_server, engine, layout=layout, flag_threshold=threshold, queue_path=queue
        )

    first, *others = layouts
    return [
        Phase(partial(vllm_server, engine, lora=False), (Cell("clean", "vllm-nolora"),)),
        Phase(partial(vllm_server, engine, lora=True), tuple(Cell(t, "vllm") for t in TRAFFICS)),
        Phase(ours(first, CLEAN_THRESHOLD), tuple(Cell("clean", m, first) for m in MODES)),
        *(Phase(ours(lay, CLEAN_THRESHOLD), (Cell("clean", "flag", lay),)) for lay in others),
        Phase(ours(first, FLAGGED_THRESHOLD), tuple(Cell("flagged", m, first) for m in MODES)),
    ]


def run_phase(
    phase: Phase,
    config: BenchConfig,
    prompts: dict[str, list[Messages]],
    logs: Path,
    on_row: Callable[[Row], None],
    say: Callable[[str], None],
) -> None:
    """Start the phase's server, warm it up, measure every cell at every concurrency."""
    spec = phase.server()
    log = logs / f"{spec.name}.log"
    say(f"{spec.name}: starting (log: {log})")
    with running(spec, log, config.start_timeout_s) as base_url:
        url = f"{base_url}/v1/chat/completions"
        measure = partial(_measure, base_url)
        for cell in phase.cells:  # warm-up: one streamed and one whole request, not counted
            warm = request_bodies(
                config.served_name, prompts[cell.traffic], 2, config.max_tokens, cell.mode
            )
            asyncio.run(run_load(url, warm, 1, config.request_timeout_s))
        for concurrency in config.concurrency:
            for cell in phase.cells:
                on_row(measure(cell, concurrency, config, prompts[cell.traffic]))


def _measure(
    base_url: str, cell: Cell, concurrency: int, config: BenchConfig, prompts: list[Messages]
) -> Row:
    bodies = request_bodies(
        config.served_name, prompts, config.requests, config.max_tokens, cell.mode
    )
    url = f"{base_url}/v1/chat/completions"
    before = read_counters(base_url)
    samples, wall = asyncio.run(run_load(url, bodies, concurrency, config.request_timeout_s))
    counted = read_counters(base_url) - before
    return summarize(cell.traffic, cell.target, cell.layout, concurrency, samples, wall, counted)
