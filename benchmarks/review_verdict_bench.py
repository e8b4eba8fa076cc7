"""Cost of the review verdict (one constrained token against free text) and of the layouts.

    .venv/bin/python benchmarks/review_verdict_bench.py --model DIR [--requests 24]
        [--concurrency 1,4] [--block-size N] [--prompts benchmarks/prompts/clean.jsonl]
        [--out var/bench-verdict]

Starts plain vLLM's server with the engine settings ``conscience bench`` uses (LoRA enabled,
prefix caching on; ``--block-size`` overrides vLLM's KV block size, 128 on CPU by default),
drafts 32-token answers to tagged questions (fresh ones for every measurement, so nothing
is served from the prefix cache by repetition), builds the judge's prompt as our server does
(``app.conscience.prompts.review_messages``, framework ``introspective``) and times, at every
concurrency, these ways of asking for the verdict:

- ``choice``: structured choice over the labels, max_tokens=1, logprobs (what the server does);
- ``first-token``: max_tokens=1 with logprobs, no grammar (Llama Guard-style scoring);
- ``free-text``: max_tokens=20, no grammar; the verdict is the first label word, if any;

all three in layout ``framework_first``, and ``choice`` in layout ``continuation`` too.
``label_found`` is the share of answers from which a label can be read at all: for the
one-token variants, the token starts a label; for free text, a label word occurs in it.
``cached`` is the mean number of prompt tokens vLLM served from its prefix cache.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import re
import statistics
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from app.conscience.frameworks import FrameworkCatalog
from app.conscience.prompts import review_messages
from app.settings import ReviewLayout
from conscience.bench.load import Messages, read_prompts, tagged
from conscience.bench.servers import EngineConfig, running, vllm_server

DRAFT_TOKENS = 32
LABELS = ("ethical", "neutral", "unethical")  # the three-way label set this study measured
CHOICE_LOGPROBS = 64
VARIANTS: dict[str, dict] = {
    "choice": {
        "max_tokens": 1,
        "logprobs": True,
        "top_logprobs": CHOICE_LOGPROBS,
        "structured_outputs": {"choice": list(LABELS)},
    },
    "first-token": {"max_tokens": 1, "logprobs": True, "top_logprobs": CHOICE_LOGPROBS},
    "free-text": {"max_tokens": 20},
}
CASES = [
    (ReviewLayout.framework_first, "choice"),
    (ReviewLayout.framework_first, "first-token"),
    (ReviewLayout.framework_first, "free-text"),
    (ReviewLayout.continuation, "choice"),
]
LABEL_WORD = re.compile(r"\b(unethical|ethical|neutral)\b", re.IGNORECASE)


@dataclasses.dataclass
class Answer:
    """One response: seconds, text (None on failure), prompt tokens and cached ones."""

    seconds: float
    text: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0


class Tokens:
    """The two tokenizer calls ``review_messages`` needs, from the model's own tokenizer."""

    def __init__(self, model_dir: Path):
        from transformers import AutoTokenizer

        self._tok = AutoTokenizer.from_pretrained(str(model_dir))

    def token_count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False))

    def truncate(self, text: str, max_tokens: int) -> str:
        ids = self._tok.encode(text, add_special_tokens=False)
        return self._tok.decode(ids[:max_tokens])


def label_found(variant: str, text: str) -> bool:
    """Whether a verdict can be read from this answer."""
    if VARIANTS[variant]["max_tokens"] == 1:  # one token: it must start a label
        piece = text.strip().lower()
        return bool(piece) and any(label.startswith(piece) for label in LABELS)
    return LABEL_WORD.search(text) is not None


async def post(client: httpx.AsyncClient, url: str, body: dict) -> Answer:
    started = time.perf_counter()
    response = await client.post(url, json=body)
    answer = Answer(time.perf_counter() - started)
    if response.status_code == 200:
        data = response.json()
        usage = data.get("usage") or {}
        answer.text = data["choices"][0]["message"]["content"] or ""
        answer.prompt_tokens = usage.get("prompt_tokens", 0)
        answer.cached_tokens = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return answer


async def run_all(url: str, bodies: list[dict], concurrency: int) -> tuple[list[Answer], float]:
    """Every body at ``concurrency``: (answers, wall seconds)."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(trust_env=False, timeout=300) as client:

        async def one(body: dict) -> Answer:
            async with gate:
                return await post(client, url, body)

        started = time.perf_counter()
        answers = await asyncio.gather(*(one(b) for b in bodies))
        return answers, time.perf_counter() - started


def draft(url: str, base: dict, prompts: list[Messages]) -> list[str]:
    """One answer of exactly ``DRAFT_TOKENS`` tokens per prompt."""
    length = {"max_tokens": DRAFT_TOKENS, "min_tokens": DRAFT_TOKENS, "ignore_eos": True}
    answers, _ = asyncio.run(run_all(url, [{**base, **length, "messages": m} for m in prompts], 4))
    return [a.text or "" for a in answers]


def summarize(layout: str, variant: str, level: int, answers: list[Answer], wall: float) -> dict:
    """One table row from one measurement."""
    ok = [a for a in answers if a.text is not None]
    if not ok:
        raise RuntimeError(f"every {variant} request failed; see the server log")
    seconds = [a.seconds for a in ok]
    return {
        "layout": layout,
        "variant": variant,
        "concurrency": level,
        "requests": len(answers),
        "errors": len(answers) - len(ok),
        "requests_per_s": round(len(ok) / wall, 2),
        "p50_ms": round(statistics.median(seconds) * 1000, 1),
        "p95_ms": round(statistics.quantiles(seconds, n=20, method="inclusive")[18] * 1000, 1),
        "prompt_tokens": round(statistics.mean(a.prompt_tokens for a in ok)),
        "cached": round(statistics.mean(a.cached_tokens for a in ok)),
        "label_found": round(sum(label_found(variant, a.text or "") for a in ok) / len(ok), 3),
    }


def measure(url: str, config: EngineConfig, prompts: list[Messages], levels: list[int]):
    """Time every case at every concurrency, each on fresh tagged questions and drafts."""
    base = {"model": config.served_name, "temperature": 0.0}
    framework = FrameworkCatalog.load().get("introspective")
    tokens = Tokens(config.model_dir)

    def bodies(layout: ReviewLayout, variant: str, count: int) -> list[dict]:
        asked = [tagged(m) for m in prompts[:count]]
        judged = [
            review_messages(tokens, framework, layout, m, d, 1024)  # type: ignore[arg-type]
            for m, d in zip(asked, draft(url, base, asked), strict=True)
        ]
        return [{**base, **VARIANTS[variant], "messages": m} for m in judged]

    rows = []
    for layout, variant in CASES:
        asyncio.run(run_all(url, bodies(layout, variant, 2), 1))  # warm-up, not counted
        for level in levels:
            answers, wall = asyncio.run(run_all(url, bodies(layout, variant, len(prompts)), level))
            rows.append(summarize(layout.value, variant, level, answers, wall))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="Model directory.")
    parser.add_argument("--requests", type=int, default=24, help="Verdicts per measurement.")
    parser.add_argument("--concurrency", default="1,4", help="Comma-separated levels.")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS.")
    parser.add_argument("--block-size", type=int, help="vLLM KV block size (CPU default 128).")
    parser.add_argument(
        "--prompts", type=Path, default=Path(__file__).parent / "prompts" / "clean.jsonl"
    )
    parser.add_argument("--out", type=Path, default=Path("var/bench-verdict"))
    args = parser.parse_args()
    prompts = read_prompts(args.prompts)
    prompts = [prompts[i % len(prompts)] for i in range(args.requests)]
    levels = [int(part) for part in args.concurrency.split(",")]
    config = EngineConfig(model_dir=args.model, served_name=args.model.name, threads=args.threads)
    spec = vllm_server(config, lora=True)
    extra = ["--enable-prompt-tokens-details"]
    extra += ["--block-size", str(args.block_size)] if args.block_size else []
    spec = dataclasses.replace(spec, argv=[*spec.argv, *extra])
    with running(spec, args.out / "vllm.log", 600) as base_url:
        rows = measure(f"{base_url}/v1/chat/completions", config, prompts, levels)
    (args.out / "verdict.json").write_text(json.dumps(rows, indent=2))
    title = f"review verdict on plain vLLM, block size {args.block_size or 'default'}"
    table = Table(*rows[0].keys(), title=title)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console(width=180).print(table)


if __name__ == "__main__":
    main()
