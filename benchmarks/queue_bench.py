"""Produce throughput and latency of the pair queue backends.

    .venv/bin/python benchmarks/queue_bench.py [--n 2000] [--redis redis://127.0.0.1:6379/0]

For each backend (a fresh SQLite file; a fresh stream on Redis, deleted afterwards) and each
batch size (1 and 32 records per ``produce`` call) it writes ``n`` records and prints
records/s and the p50 / p99 latency of one ``produce`` call. Durability settings are the
backends' own: SQLite WAL with synchronous=FULL; Redis as that server is configured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from app.queue import open_queue
from app.records import Message, PairRecord


def _records(n: int) -> list[PairRecord]:
    return [
        PairRecord(
            prompt=[Message(role="user", content=f"How do I do thing {i}? " * 8)],
            chosen=[Message(role="assistant", content="A careful, helpful answer. " * 12)],
            rejected=[Message(role="assistant", content="The flagged draft answer. " * 12)],
            framework="three_laws",
            framework_version="1",
            review_prompt_hash="0" * 16,
            verdict="unethical",
            score=0.87,
        )
        for i in range(n)
    ]


def _measure(url: str, n: int, batch: int) -> tuple[float, float, float]:
    """(records/s, p50 ms, p99 ms) for ``n`` records produced ``batch`` at a time."""
    records = _records(n)
    latencies = []
    with open_queue(url) as queue:
        started = time.perf_counter()
        for i in range(0, n, batch):
            t0 = time.perf_counter()
            queue.produce(records[i : i + batch])
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return n / elapsed, cuts[49] * 1000, cuts[98] * 1000


def _drop_stream(redis_url: str, stream: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{{{stream}}}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="Records per measurement.")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis server URL.")
    args = parser.parse_args()
    table = Table("backend", "records/call", "records/s", "p50 ms/call", "p99 ms/call")
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (1, 32):
            url = f"sqlite:///{Path(tmp) / f'bench-{batch}.db'}"
            rate, p50, p99 = _measure(url, args.n, batch)
            table.add_row("sqlite", str(batch), f"{rate:,.0f}", f"{p50:.2f}", f"{p99:.2f}")
    for batch in (1, 32):
        stream = f"bench:{uuid.uuid4().hex}"
        try:
            rate, p50, p99 = _measure(f"{args.redis}?stream={stream}", args.n, batch)
        finally:
            _drop_stream(args.redis, stream)
        table.add_row("redis", str(batch), f"{rate:,.0f}", f"{p50:.2f}", f"{p99:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
