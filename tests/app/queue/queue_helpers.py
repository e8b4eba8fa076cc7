"""Helpers shared by the queue tests and their child processes (``queue_worker.py``)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis
from prometheus_client import REGISTRY

from app.records import Message, PairRecord

REDIS_URL = "redis://127.0.0.1:6379/0"


def make_record(
    i: int,
    *,
    prefix: str = "r",
    framework: str = "three_laws",
    verdict: str = "unethical",
    score: float | None = 0.9,
    prompt: str | None = None,
) -> PairRecord:
    """A deterministic record ``{prefix}-{i}``."""
    return PairRecord(
        id=f"{prefix}-{i}",
        prompt=[Message(role="user", content=prompt or f"question {i}")],
        chosen=[Message(role="assistant", content=f"a careful answer {i}")],
        rejected=[Message(role="assistant", content=f"the flagged draft {i}")],
        framework=framework,
        framework_version="1",
        review_prompt_hash="hash",
        verdict=verdict,
        score=score,
    )


def sample(name: str, **labels: str) -> float:
    """The current value of a Prometheus sample in this process (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def delete_stream_keys(stream: str) -> None:
    """Remove every key of one test stream from the shared Redis."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{{{stream}}}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server of our own (AOF, fsync always) that tests may kill and restart."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "save": "",
            "appendonly": "yes",
            "appendfsync": "always",
            "dir": str(self.directory),
            "enable-debug-command": "local",
        }
        args = [x for name, value in options.items() for x in (f"--{name}", value)]
        self.process = subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
