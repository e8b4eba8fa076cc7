"""Fixtures for the queue tests: a fresh queue URL per test on each backend."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.app.queue.queue_helpers import REDIS_URL, PrivateRedis, delete_stream_keys

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def redis_queue_url() -> Iterator[str]:
    """A new stream on the shared Redis; its keys are deleted afterwards (never FLUSHDB)."""
    stream = f"test:{uuid.uuid4().hex}"
    yield f"{REDIS_URL}?stream={stream}"
    delete_stream_keys(stream)


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL naming an empty queue: a new SQLite file, or a new stream on the shared Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pairs.db'}"
    return request.getfixturevalue("redis_queue_url")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, not started yet; killed at the end."""
    server = PrivateRedis(tmp_path)
    yield server
    server.kill()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``queue_worker.py`` children; any still running at the end are killed."""
    children: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def start(*args: str) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.app.queue.queue_worker", *args], cwd=REPO_ROOT, env=env
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait()
