"""Counters read off a server's ``/metrics`` around one load run: how much of the review's
prompt the prefix cache served (ours), and the engine-wide prefix-cache hit rate (vLLM's own
``vllm:prefix_cache_*`` counters, on both servers)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Counters:
    """Cumulative counts at one moment; subtract two to get one run's."""

    reviews: float = 0.0
    review_prompt_tokens: float = 0.0
    review_cached_tokens: float = 0.0
    cache_queries: float = 0.0
    cache_hits: float = 0.0

    def __sub__(self, other: Counters) -> Counters:
        return Counters(*(a - b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[float, ...]:
        return (
            self.reviews,
            self.review_prompt_tokens,
            self.review_cached_tokens,
            self.cache_queries,
            self.cache_hits,
        )


def read_counters(base_url: str) -> Counters:
    """The counters a server exports now (zeros for series it does not have)."""
    text = httpx.get(f"{base_url}/metrics", timeout=30.0, trust_env=False).text
    found = dict.fromkeys(
        ("reviews", "prompt", "cached", "queries", "hits"),
        0.0,
    )
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = _key(s.name, s.labels)
            if key:
                found[key] += s.value
    return Counters(
        found["reviews"], found["prompt"], found["cached"], found["queries"], found["hits"]
    )


def _key(name: str, labels: dict[str, str]) -> str | None:
    review = labels.get("stage") == "review"
    if name == "conscience_stage_latency_seconds_count" and review:
        return "reviews"
    if name == "conscience_tokens_total" and review and labels.get("kind") == "prompt":
        return "prompt"
    if name == "conscience_prefix_cached_tokens_total" and review:
        return "cached"
    if name == "vllm:prefix_cache_queries_total":
        return "queries"
    if name == "vllm:prefix_cache_hits_total":
        return "hits"
    return None
