"""A bounded, self-terminating load generator: N chat requests at concurrency C over loopback.

Every request asks for exactly ``max_tokens`` tokens (``min_tokens`` = ``max_tokens`` and
``ignore_eos``), so each server generates the same amount of text and throughput compares.
Every question starts with a random tag, so no two requests share a prompt prefix: repeated
questions would be answered from vLLM's prefix cache and flatter whichever target ran later.
Even-numbered requests stream (with ``stream_options.include_usage``), odd ones do not:
latency covers both, time to first token (TTFT) the streamed half. A request that fails
(transport error, non-200 status, an error event, no usage) is an error sample, never
dropped; C workers share one list of requests and stop when it is used up.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

Messages = list[dict[str, str]]


@dataclass
class Sample:
    """One request's measurements."""

    stream: bool
    latency_s: float = 0.0
    ttft_s: float | None = None
    output_tokens: int = 0
    action: str | None = None
    review_ms: float | None = None
    error: str | None = None


def read_prompts(path: Path) -> list[Messages]:
    """Conversations from a JSONL file, one ``{"messages": [...]}`` object per line."""
    prompts = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        messages = json.loads(line).get("messages")
        if not messages or not all({"role", "content"} <= set(m) for m in messages):
            raise ValueError(f"{path}:{number}: expected messages with role and content")
        if not any(m["role"] == "user" for m in messages):
            raise ValueError(f"{path}:{number}: expected a user message")
        prompts.append(messages)
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def tagged(messages: Messages) -> Messages:
    """``messages`` with a random tag opening the first user message."""
    first = next(i for i, m in enumerate(messages) if m["role"] == "user")
    out = [dict(m) for m in messages]
    out[first]["content"] = f"({uuid.uuid4().hex[:8]}) {out[first]['content']}"
    return out


def request_bodies(
    model: str, prompts: list[Messages], n: int, max_tokens: int, mode: str | None
) -> list[dict]:
    """``n`` request bodies cycling through ``prompts``; ``mode`` sets the conscience mode."""
    bodies = []
    for i in range(n):
        stream = i % 2 == 0
        body = {
            "model": model,
            "messages": tagged(prompts[i % len(prompts)]),
            "max_tokens": max_tokens,
            "min_tokens": max_tokens,
            "ignore_eos": True,
            "temperature": 0.0,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if mode is not None:
            body["conscience"] = {"mode": mode}
        bodies.append(body)
    return bodies


async def run_load(
    url: str, bodies: list[dict], concurrency: int, timeout_s: float
) -> tuple[list[Sample], float]:
    """Send every body to ``url`` with ``concurrency`` workers: (samples, wall seconds)."""
    pending = iter(bodies)
    samples: list[Sample] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(trust_env=False, timeout=timeout_s, limits=limits) as client:

        async def worker() -> None:
            for body in pending:
                samples.append(await one_request(client, url, body))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return samples, wall


async def one_request(client: httpx.AsyncClient, url: str, body: dict) -> Sample:
    """Send one request and measure it; failures become an error sample."""
    sample = Sample(stream=body["stream"])
    started = time.perf_counter()
    try:
        if sample.stream:
            await _streamed(client, url, body, sample, started)
        else:
            await _whole(client, url, body, sample)
    except (httpx.HTTPError, ValueError) as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    sample.latency_s = time.perf_counter() - started
    if sample.error is None and sample.output_tokens <= 0:
        sample.error = "no completion tokens reported in usage"
    return sample


async def _whole(client: httpx.AsyncClient, url: str, body: dict, sample: Sample) -> None:
    response = await client.post(url, json=body)
    if response.status_code != 200:
        sample.error = f"HTTP {response.status_code}: {response.text[:200]}"
        return
    data = response.json()
    sample.output_tokens = (data.get("usage") or {}).get("completion_tokens", 0)
    _note_conscience(data, sample)


async def _streamed(
    client: httpx.AsyncClient, url: str, body: dict, sample: Sample, started: float
) -> None:
    async with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            sample.error = f"HTTP {response.status_code}: {text[:200]}"
            return
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if "error" in chunk:
                sample.error = f"error event: {str(chunk['error'])[:200]}"
            if sample.ttft_s is None and any(
                (c.get("delta") or {}).get("content") for c in chunk.get("choices") or []
            ):
                sample.ttft_s = time.perf_counter() - started
            if chunk.get("usage"):
                sample.output_tokens = chunk["usage"].get("completion_tokens", 0)
            _note_conscience(chunk, sample)


def _note_conscience(payload: dict, sample: Sample) -> None:
    """What our server's ``conscience`` object says (absent on plain vLLM)."""
    report = payload.get("conscience")
    if report:
        sample.action = report.get("action")
        sample.review_ms = (report.get("latency_ms") or {}).get("review")
