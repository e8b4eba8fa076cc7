"""Crash semantics with real processes: SIGKILL mid-training and between publish and ack.

The trainer is killed at moments observed from outside: its training progress bar, and its
``stage=published`` log line while the queue's write lock is held so its ack cannot land.
"""

from __future__ import annotations

import sqlite3
import time

from app.adapter_registry import AdapterRegistry, base_model_identity
from app.queue import open_queue
from tests.trainer.trainer_helpers import TrainerProcess, make_pairs, trainer_options
from trainer.config import TrainerConfig
from trainer.loop import run


def assert_current_complete(config: TrainerConfig, version: str) -> None:
    registry = AdapterRegistry(config.adapters)
    assert registry.read_manifest().current == version
    assert registry.validate_version(version, base_model_identity(config.model), 16) == []


def trained_ids(config: TrainerConfig) -> list[str]:
    manifest = AdapterRegistry(config.adapters).read_manifest()
    return [pid for v in manifest.versions for pid in v.pair_ids]


def test_sigkill_during_training_loses_nothing(demo_model, tmp_path):
    options = trainer_options(demo_model, tmp_path, once=True, lease_s=2.0)
    config = TrainerConfig(**options)
    first, second = make_pairs(12), make_pairs(16, start=100)
    with open_queue(config.queue) as queue:
        queue.produce(first)
        run(config)
        queue.produce(second)
        trainer = TrainerProcess({**options, "epochs": 50.0}, tmp_path / "stderr.txt")
        try:
            trainer.wait_training()
        finally:
            trainer.kill()
        assert_current_complete(config, "v000001")
        stats = queue.stats()
        assert (stats.leased + stats.depth, stats.acked) == (16, 12)
        deadline = time.monotonic() + 30
        while queue.stats().depth < 16:  # the dead trainer's leases expire
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert run(config) == 0
        assert (queue.stats().acked, queue.stats().depth) == (28, 0)
    assert_current_complete(config, "v000002")
    ids = trained_ids(config)
    assert sorted(ids) == sorted(r.id for r in first + second)  # none lost, none twice
    assert not list(config.adapters.glob(".staging-*"))


def test_sigkill_between_publish_and_ack_trains_nothing_twice(demo_model, tmp_path):
    options = trainer_options(demo_model, tmp_path, once=True, lease_s=600.0)
    config = TrainerConfig(**options)
    pairs = make_pairs(12)
    with open_queue(config.queue) as queue:
        queue.produce(pairs)
        trainer = TrainerProcess(options, tmp_path / "stderr.txt")
        lock = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
        try:
            trainer.wait_line("stage=leased")
            lock.execute("BEGIN IMMEDIATE")  # the trainer's ack now waits for this lock
            trainer.wait_line("stage=published")
        finally:
            trainer.kill()
            lock.rollback()
            lock.close()
        assert_current_complete(config, "v000001")
        assert (queue.stats().leased, queue.stats().acked) == (12, 0)
        assert run(config) == 0  # restart: acks the published pairs, trains nothing
        assert (queue.stats().leased, queue.stats().acked) == (0, 12)
    assert_current_complete(config, "v000001")
    assert sorted(trained_ids(config)) == sorted(r.id for r in pairs)
