"""The consume loop on a real SQLite queue and registry: rounds, skips, dedupe, waiting."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

from app.adapter_registry import AdapterRegistry, base_model_identity
from app.queue import open_queue
from tests.trainer.trainer_helpers import TrainerProcess, make_pairs, trainer_options
from trainer.config import TrainerConfig
from trainer.loop import run


def test_once_trains_publishes_acks_and_counts_skips(demo_model, tmp_path):
    config = TrainerConfig(**trainer_options(demo_model, tmp_path, once=True))
    pairs = make_pairs(20)
    future = make_pairs(1, start=100, schema_version=2)
    long = make_pairs(1, start=200)
    long[0].rejected[0].content = "harm " * 300
    with open_queue(config.queue) as queue:
        queue.produce(pairs + future + long)
        assert run(config) == 0
        stats = queue.stats()
    registry = AdapterRegistry(config.adapters)
    manifest = registry.read_manifest()
    entry = manifest.entry(manifest.current)
    assert (manifest.current, entry.parent) == ("v000001", None)
    assert set(entry.pair_ids) == {r.id for r in pairs + future + long}
    assert (stats.acked, stats.depth, stats.leased) == (22, 0, 0)
    metrics = entry.metrics
    assert (metrics["pairs_trained"], metrics["pairs_heldout"]) == (15, 5)
    assert (metrics["skipped_schema"], metrics["skipped_long"]) == (1, 1)
    assert metrics["heldout_margin_after"] > metrics["heldout_margin_before"]
    assert registry.validate_version("v000001", base_model_identity(demo_model), 16) == []


def test_next_round_continues_and_mixes_replay(demo_model, tmp_path):
    replay = tmp_path / "replay.jsonl"
    rows = [r.model_dump(include={"prompt", "chosen", "rejected"}) for r in make_pairs(8, 50)]
    replay.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    config = TrainerConfig(**trainer_options(demo_model, tmp_path, once=True, replay_file=replay))
    with open_queue(config.queue) as queue:
        for start in (0, 100):
            queue.produce(make_pairs(12, start))
            assert run(config) == 0
    manifest = AdapterRegistry(config.adapters).read_manifest()
    second = manifest.entry("v000002")
    assert (manifest.current, second.parent) == ("v000002", "v000001")
    assert second.metrics["pairs_replay"] == round(0.25 * second.metrics["pairs_trained"])


def test_already_trained_pairs_are_acked_not_retrained(demo_model, tmp_path):
    config = TrainerConfig(**trainer_options(demo_model, tmp_path, once=True))
    pairs = make_pairs(12)
    with open_queue(config.queue) as queue:
        queue.produce(pairs)
        run(config)
    # The same records delivered again (re-imported into a fresh queue): acked, not retrained.
    again = replace(config, queue=f"sqlite:///{tmp_path / 'again.db'}")
    with open_queue(again.queue) as queue:
        queue.produce(pairs)
        assert run(again) == 0
        assert (queue.stats().acked, queue.stats().depth) == (12, 0)
    manifest = AdapterRegistry(config.adapters).read_manifest()
    assert [v.version for v in manifest.versions] == ["v000001"]


def test_too_few_pairs_are_not_leased(demo_model, tmp_path):
    config = TrainerConfig(**trainer_options(demo_model, tmp_path, once=True))
    with open_queue(config.queue) as queue:
        queue.produce(make_pairs(config.min_pairs - 1))
        assert run(config) == 0
        assert (queue.stats().leased, queue.stats().depth) == (0, config.min_pairs - 1)
    assert AdapterRegistry(config.adapters).read_manifest() is None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_empty_queue_waits_without_busy_looping_then_trains(demo_model, tmp_path):
    options = trainer_options(demo_model, tmp_path)
    trainer = TrainerProcess(options, tmp_path / "stderr.txt")
    try:
        trainer.wait_line("stage=waiting")
        used, started = cpu_seconds(trainer.proc.pid), time.monotonic()
        time.sleep(2.0)
        assert cpu_seconds(trainer.proc.pid) - used < 0.3  # of 2 s: sleeping, not spinning
        with open_queue(options["queue"]) as queue:
            queue.produce(make_pairs(8))
            trainer.wait_line("stage=acked")
            assert queue.stats().acked == 8
        assert time.monotonic() - started < 60
    finally:
        trainer.kill()
