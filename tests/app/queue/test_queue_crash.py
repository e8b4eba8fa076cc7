"""Crashes with real processes: killed consumers and producers, dropped Redis connections,
a Redis server killed and restarted, corrupt SQLite files."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path

import pytest
import redis

from app.queue import QueueError, open_queue
from app.records import PairRecord
from tests.app.queue.queue_helpers import REDIS_URL, PrivateRedis, make_record


def _wait_for_lines(path: Path, count: int, timeout: float = 30) -> list[str]:
    """Complete lines of ``path`` once it has at least ``count`` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            lines = text.splitlines()[: text.count("\n")]
            if len(lines) >= count:
                return lines
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {count} lines")


def test_killed_consumer_records_are_redelivered_and_consumed_once(
    queue_url: str, tmp_path: Path, spawn
) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(30)])
    out = tmp_path / "consumer.out"
    child = spawn("consume", queue_url, "20", "0.5", "5", str(out))
    consumed = [line for line in _wait_for_lines(out, 6) if line != "LEASED"]
    child.kill()
    child.wait()
    deadline = time.monotonic() + 10
    with open_queue(queue_url) as q:
        while len(consumed) < 30 and time.monotonic() < deadline:
            leased = q.lease(8, 30, consumer="survivor")
            consumed += [x.record.id for x in leased]
            q.ack([x.record.id for x in leased])
            time.sleep(0.05)
        stats = q.stats()
    assert Counter(consumed) == Counter(f"r-{i}" for i in range(30))
    assert (stats.depth, stats.leased, stats.acked) == (0, 0, 30)


def test_killed_producer_loses_no_acknowledged_record(
    queue_url: str, tmp_path: Path, spawn
) -> None:
    out = tmp_path / "produced.out"
    child = spawn("produce", queue_url, "burst", "0", str(out))
    _wait_for_lines(out, 60)
    child.kill()
    child.wait()
    acknowledged = [PairRecord.model_validate_json(line) for line in _wait_for_lines(out, 60)]
    with open_queue(queue_url) as q:
        stored = {r.id: r for r in q.records()}
    assert all(stored.get(r.id) == r for r in acknowledged)
    assert len(stored) - len(acknowledged) in (0, 1)


def _kill_clients(name: str, stop: threading.Event, kills: list[int]) -> None:
    admin = redis.Redis.from_url(REDIS_URL)
    try:
        while not stop.is_set():
            for client in admin.client_list():
                if client.get("name") == name:
                    admin.client_kill_filter(_id=client["id"])
                    kills.append(1)
            time.sleep(0.01)
    finally:
        admin.close()


def test_producer_recovers_from_killed_redis_connections(redis_queue_url: str) -> None:
    name = f"kill-me-{redis_queue_url.split('stream=')[1]}"
    stop, kills = threading.Event(), []
    killer = threading.Thread(target=_kill_clients, args=(name, stop, kills))
    produced = 0
    with open_queue(f"{redis_queue_url}&client_name={name}") as q:
        killer.start()
        try:
            while produced < 100 or len(kills) < 5:
                assert produced < 20_000, "the killer never got going"
                q.produce([make_record(produced)])
                if produced % 10 == 0:
                    q.produce([make_record(produced)])  # retried after a kill: no duplicate
                produced += 1
                time.sleep(0.001)
        finally:
            stop.set()
            killer.join()
        assert [r.id for r in q.records()] == [f"r-{i}" for i in range(produced)]


def test_produce_survives_its_connection_killed_mid_command(private_redis: PrivateRedis) -> None:
    """While the server is frozen (DEBUG SLEEP), a produce is sent and a kill of its
    connection is queued behind it: the produce's reply is lost (or it never ran), and the
    call must still succeed, exactly once."""
    private_redis.start()
    admin, killer = (redis.Redis(port=private_redis.port) for _ in range(2))
    killer.ping()
    try:
        with open_queue(f"{private_redis.url}?client_name=victim") as q:
            for i in range(5):
                q.stats()  # (re)connects the victim
                (victim,) = [c["id"] for c in admin.client_list() if c["name"] == "victim"]
                steps = [
                    partial(admin.execute_command, "DEBUG", "SLEEP", 0.3),
                    partial(q.produce, [make_record(i)]),
                    partial(killer.client_kill_filter, _id=victim),
                ]
                threads = [threading.Thread(target=step) for step in steps]
                for thread in threads:
                    thread.start()
                    time.sleep(0.05)
                for thread in threads:
                    thread.join()
            assert [r.id for r in q.records()] == [f"r-{i}" for i in range(5)]
    finally:
        admin.close()
        killer.close()


def test_a_produce_retried_after_a_lost_reply_is_not_duplicated(
    private_redis: PrivateRedis,
) -> None:
    """The server freezes past the client's socket timeout: the first attempt runs when the
    server wakes but its reply is lost; the retry must not append the records again."""
    private_redis.start()
    admin = redis.Redis(port=private_redis.port)
    try:
        with open_queue(f"{private_redis.url}?socket_timeout=0.2") as q:
            q.produce([make_record(9)])  # connects and loads the script
            frozen = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", 0.5))
            frozen.start()
            time.sleep(0.05)
            q.produce([make_record(i) for i in range(3)])
            frozen.join()
            assert [r.id for r in q.records()] == ["r-9", "r-0", "r-1", "r-2"]
        assert admin.xlen("{conscience:pairs}:stream") == 4
    finally:
        admin.close()


def test_producer_recovers_after_redis_restart(private_redis: PrivateRedis) -> None:
    private_redis.start()
    q = open_queue(private_redis.url)
    try:
        q.produce([make_record(i) for i in range(20)])
        q.ack([x.record.id for x in q.lease(5, 30, consumer="a")])
        private_redis.kill()
        with pytest.raises(QueueError, match=f"127.0.0.1:{private_redis.port}"):
            q.produce([make_record(20)])
        private_redis.start()
        q.produce([make_record(20)])
        stats = q.stats()
        assert (stats.depth, stats.acked) == (16, 5)
        assert [x.record.id for x in q.lease(1, 30, consumer="b")] == ["r-5"]
    finally:
        q.close()


def test_a_lost_consumer_group_is_recreated_without_redelivering_acked(
    redis_queue_url: str,
) -> None:
    with open_queue(redis_queue_url) as q:
        q.produce([make_record(i) for i in range(4)])
        q.ack([x.record.id for x in q.lease(2, 30, consumer="a")])
        admin = redis.Redis.from_url(REDIS_URL)
        stream = redis_queue_url.split("stream=")[1]
        assert admin.xgroup_destroy(f"{{{stream}}}:stream", "consumers") == 1
        admin.close()
        assert q.stats().depth == 2
        assert [x.record.id for x in q.lease(4, 30, consumer="b")] == ["r-2", "r-3"]


def _filled_sqlite(path: Path) -> None:
    with open_queue(f"sqlite:///{path}") as q:
        q.produce([make_record(i, prompt="x" * 2000) for i in range(200)])


def test_truncated_sqlite_file_raises_queue_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "pairs.db"
    _filled_sqlite(path)
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 3)
    with pytest.raises(QueueError, match=re.escape(str(path))):
        open_queue(f"sqlite:///{path}").stats()


def test_garbage_sqlite_file_raises_queue_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "pairs.db"
    _filled_sqlite(path)
    with path.open("r+b") as f:
        f.write(b"definitely not SQLite" * 100)
    with pytest.raises(QueueError, match=re.escape(f"{path}: file is not a database")):
        open_queue(f"sqlite:///{path}")
