"""The trainer's Prometheus series (``conscience_trainer_`` prefix), served on ``--metrics-port``.

Rounds by outcome, pairs by what became of them, the last round's loss and duration, the last
publish (time and version number), leases reclaimed on restart, and the queue as the trainer
last saw it. Only the main process serves them; plain ``prometheus_client``, default registry
(so the process collector's CPU and memory series show too).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

ROUNDS = Counter(
    "conscience_trainer_rounds_total",
    "Training rounds, by outcome (published: a new version; dropped: nothing trainable).",
    ["outcome"],
)
PAIRS = Counter(
    "conscience_trainer_pairs_total",
    "Queued pairs consumed, by what became of them.",
    ["kind"],  # trained, heldout, skipped_long, skipped_schema, skipped_unchanged, deduped
)
REPLAY_PAIRS = Counter("conscience_trainer_replay_pairs_total", "Replay pairs mixed into rounds.")
LEASED = Counter("conscience_trainer_leased_total", "Pairs leased from the queue.")
RECLAIMED = Counter(
    "conscience_trainer_reclaimed_total", "Leases of a dead predecessor released on start."
)
LOSS = Gauge("conscience_trainer_last_loss", "Training loss of the last published round.")
REWARD_ACCURACY = Gauge(
    "conscience_trainer_last_reward_accuracy", "DPO reward accuracy of the last published round."
)
ROUND_SECONDS = Histogram(
    "conscience_trainer_round_seconds",
    "Wall time of one round (data, training, measuring, saving).",
    buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
LAST_PUBLISH = Gauge(
    "conscience_trainer_last_publish_timestamp_seconds", "Unix time of the last publish."
)
LAST_VERSION = Gauge(
    "conscience_trainer_last_version", "Number of the last published version (v000012: 12)."
)
QUEUE_DEPTH = Gauge("conscience_trainer_queue_depth", "Ready records at the trainer's last poll.")

_ROUND_KINDS = (
    "pairs_trained",
    "pairs_heldout",
    "skipped_long",
    "skipped_schema",
    "skipped_unchanged",
)


def serve(port: int, addr: str = "0.0.0.0") -> Any:
    """Start the exposition server in a daemon thread; the server (``shutdown()`` stops it)."""
    server, _ = start_http_server(port, addr)
    return server


def round_counts(counts: dict[str, int]) -> None:
    """Count a round's pairs (``trainer.loop._counts``) by kind."""
    for key in _ROUND_KINDS:
        PAIRS.labels(key.removeprefix("pairs_")).inc(counts.get(key, 0))
    REPLAY_PAIRS.inc(counts.get("pairs_replay", 0))


def published(version: str, metrics: dict[str, Any], at: float) -> None:
    """Record a published round."""
    ROUNDS.labels("published").inc()
    if metrics.get("loss") is not None:
        LOSS.set(metrics["loss"])
    if metrics.get("reward_accuracy") is not None:
        REWARD_ACCURACY.set(metrics["reward_accuracy"])
    if metrics.get("seconds") is not None:
        ROUND_SECONDS.observe(metrics["seconds"])
    LAST_PUBLISH.set(at)
    LAST_VERSION.set(int(version.lstrip("v")))
