"""A Redis queue warns when its server would lose acknowledged pairs in a crash."""

from __future__ import annotations

import logging

import pytest
import redis

from app.queue import open_queue


def test_aof_with_fsync_always_is_durable(private_redis, caplog):
    private_redis.start()
    with caplog.at_level(logging.WARNING), open_queue(private_redis.url) as queue:
        assert queue.persistence_warning() is None
    assert "appendonly" not in caplog.text


@pytest.mark.parametrize(
    ("setting", "value", "shown"),
    [("appendfsync", "everysec", "appendfsync=everysec"), ("appendonly", "no", "appendonly=no")],
)
def test_weaker_persistence_is_warned_about_once(private_redis, caplog, setting, value, shown):
    private_redis.start()
    client = redis.Redis(port=private_redis.port)
    client.config_set(setting, value)
    client.close()
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            with open_queue(f"{private_redis.url}?stream=warned") as queue:
                assert shown in queue.persistence_warning()
    warnings = [r for r in caplog.records if "can lose pairs" in r.getMessage()]
    assert len(warnings) == 1 and shown in warnings[0].getMessage()
