"""Every Prometheus series the server exports, defined once, ``conscience_`` prefix.

Labels are bounded: stage, framework (operator-defined set), verdict, action, failure kind.
``/metrics`` serves the default registry so vLLM's own series appear beside these.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge, Histogram, Info

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

STAGE_LATENCY = Histogram(
    "conscience_stage_latency_seconds",
    "Latency of one pipeline stage.",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
)
REQUEST_LATENCY = Histogram(
    "conscience_request_latency_seconds",
    "End-to-end latency of a chat completion.",
    ["mode", "stream"],
    buckets=_LATENCY_BUCKETS,
)
VERDICTS = Counter("conscience_verdicts_total", "Review verdicts.", ["framework", "verdict"])
ACTIONS = Counter("conscience_actions_total", "What the conscience did.", ["mode", "action"])
REVIEW_FAILURES = Counter(
    "conscience_review_failures_total", "Reviews that failed, by kind.", ["kind"]
)
FAIL_DECISIONS = Counter(
    "conscience_failure_decisions_total",
    "Decisions taken after a review failure (fail_open / fail_closed).",
    ["policy"],
)
TOKENS = Counter(
    "conscience_tokens_total", "Tokens processed, by stage and kind.", ["stage", "kind"]
)
CACHED_TOKENS = Counter(
    "conscience_prefix_cached_tokens_total",
    "Prompt tokens served from the engine's prefix cache, by stage (compare with "
    "conscience_tokens_total{kind='prompt'}).",
    ["stage"],
)
IN_FLIGHT = Gauge("conscience_requests_in_flight", "Chat completions being served.")
REQUEST_ERRORS = Counter(
    "conscience_request_errors_total", "Requests answered with an error.", ["status"]
)
EVENT_LOOP_TASKS = Gauge(
    "conscience_event_loop_tasks", "Asyncio tasks alive in the server's event loop (at scrape)."
)


def _event_loop_tasks() -> float:
    """Tasks of the running loop; NaN when collected outside one (``/metrics`` runs in it)."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:
        return float("nan")


EVENT_LOOP_TASKS.set_function(_event_loop_tasks)

# Pair queue (producer side)
PAIRS_SKIPPED = Counter(
    "conscience_pairs_skipped_total",
    "Flagged drafts that made no pair (rewrite_unchanged: the rewrite repeated the draft).",
    ["reason"],
)
QUEUE_PRODUCED = Counter("conscience_queue_produced_total", "Pairs durably written.")
QUEUE_PRODUCE_FAILURES = Counter(
    "conscience_queue_produce_failures_total", "Failed produce attempts (each is retried)."
)
QUEUE_PRODUCE_RETRIES = Counter("conscience_queue_produce_retries_total", "Produce retries.")
QUEUE_DROPS = Counter(
    "conscience_queue_drops_total", "Pairs dropped (buffer full or shutdown timeout).", ["reason"]
)
QUEUE_PRODUCE_LATENCY = Histogram(
    "conscience_queue_produce_latency_seconds",
    "Latency of one durable produce call.",
    buckets=_LATENCY_BUCKETS,
)
QUEUE_BUFFERED = Gauge("conscience_queue_buffered", "Pairs waiting in the producer buffer.")
QUEUE_DEPTH = Gauge("conscience_queue_depth", "Records ready to lease (last observed).")
QUEUE_LAG = Gauge(
    "conscience_queue_lag_seconds", "Age of the oldest unacked record (last observed)."
)
QUEUE_REDELIVERIES = Counter(
    "conscience_queue_redeliveries_total", "Records leased again after a lease expired."
)

# Adapters
ADAPTER_INFO = Info("conscience_adapter", "The adapter drafts currently use.")
ADAPTER_SWAPS = Counter("conscience_adapter_swaps_total", "Adapter swaps done.")
ADAPTER_REJECTED = Counter(
    "conscience_adapter_rejected_total", "Adapter versions refused.", ["reason"]
)
ADAPTER_SWAP_LATENCY = Histogram(
    "conscience_adapter_swap_seconds",
    "Time to validate and load an adapter.",
    buckets=_LATENCY_BUCKETS,
)

# Adapter lifecycle: promotion gate and drift monitors (app/lifecycle/)
GATE_DECISIONS = Counter(
    "conscience_gate_decisions_total",
    "Promotion gate verdicts on new adapter versions.",
    ["verdict"],
)
GATE_FIGURES = Gauge(
    "conscience_gate_figure",
    "The last gate evaluation's figures, for the candidate and the version in service.",
    ["role", "figure"],
)
GATE_SECONDS = Histogram(
    "conscience_gate_seconds", "Time to evaluate one candidate version.", buckets=_LATENCY_BUCKETS
)
MONITOR_FLAG_RATE = Gauge(
    "conscience_monitor_flag_rate", "Canary flag rate (current / previous version).", ["slot"]
)
MONITOR_REFUSAL_RATE = Gauge(
    "conscience_monitor_refusal_rate", "Canary refusal rate (current / previous).", ["slot"]
)
MONITOR_MEAN_TOKENS = Gauge(
    "conscience_monitor_mean_tokens", "Canary mean answer length in tokens.", ["slot"]
)
MONITOR_MEAN_SCORE = Gauge(
    "conscience_monitor_mean_score", "Canary mean review score P(unethical).", ["slot"]
)
MONITOR_RUNS = Counter("conscience_monitor_runs_total", "Canary runs done.")
MONITOR_ROLLBACKS = Counter(
    "conscience_monitor_rollbacks_total", "Automatic rollbacks, by the bound crossed.", ["bound"]
)
