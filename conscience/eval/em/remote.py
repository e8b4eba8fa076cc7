"""Answers from a running conscience server (``--base-url``), labelled by the adapter behind them.

The server is asked with its conscience ``off`` (the policy's own answer: no review, no rewrite)
and with the in-process arms' sampling (temperature, top-p 1, no top-k, no repetition penalty,
the same seed per prompt and sample); the local engine's frozen base judges every answer
afterwards, as it judges the in-process arms. Each answer's arm is ``LABEL@VERSION``, the
adapter version the server reports for that draft (``base``: none), so a run taken while
``conscience loop`` swaps adapters splits into one arm per version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
from rich.progress import Progress

from conscience.eval.em.answers import Sample, draw_seed


class ServerError(RuntimeError):
    """The server cannot be reached or refused a request."""


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


def _client(base_url: str, api_key: str | None, concurrency: int = 1) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    timeout = httpx.Timeout(900.0, connect=10.0)
    limits = httpx.Limits(max_connections=max(1, concurrency))
    return httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout, limits=limits)


async def served_model(base_url: str, api_key: str | None = None) -> str:
    """The model id the server answers as (its first ``/v1/models`` entry), or a
    ``ServerError`` saying why the server cannot be used."""
    try:
        async with _client(base_url, api_key) as client:
            response = await client.get("/v1/models")
    except httpx.HTTPError as exc:
        raise ServerError(f"no conscience server at {base_url}: {exc}") from None
    if response.status_code != 200:
        status = response.status_code
        raise ServerError(f"{base_url}/v1/models answered {status}: {_message(response)}")
    models = response.json().get("data") or []
    if not models:
        raise ServerError(f"{base_url}/v1/models lists no model")
    return str(models[0]["id"])


async def generate_remote(
    base_url: str,
    model: str,
    label: str,
    samples: Sequence[Sample],
    *,
    max_tokens: int,
    temperature: float,
    seed: int,
    concurrency: int,
    progress: Progress,
    api_key: str | None = None,
) -> None:
    """Fill ``answer`` and ``arm`` of every sample from the server, asking as ``model``."""
    async with _client(base_url, api_key, concurrency) as client:
        gate = asyncio.Semaphore(concurrency)
        task = progress.add_task(f"answering ({base_url})", total=len(samples))

        async def one(sample: Sample) -> None:
            body = {
                "model": model,
                "messages": sample.messages,
                "max_tokens": max_tokens,
                "temperature": temperature,
                "top_p": 1.0,  # as the in-process arms sample: no top-p/k, no penalty
                "top_k": 0,
                "repetition_penalty": 1.0,
                "seed": draw_seed(seed, sample),
                "conscience": {"mode": "off"},
            }
            async with gate:
                try:
                    response = await client.post("/v1/chat/completions", json=body)
                except httpx.HTTPError as exc:
                    raise ServerError(f"{base_url}: {exc}") from None
            if response.status_code != 200:
                raise ServerError(
                    f"{base_url}/v1/chat/completions answered {response.status_code}: "
                    f"{_message(response)}"
                )
            completion = response.json()
            choice = completion["choices"][0]
            sample.answer = choice["message"]["content"]
            sample.finish_reason = choice.get("finish_reason") or ""
            sample.arm = f"{label}@{completion['conscience'].get('adapter') or 'base'}"
            progress.advance(task)

        await asyncio.gather(*(one(s) for s in samples))
