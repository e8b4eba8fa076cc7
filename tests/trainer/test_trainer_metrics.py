"""``conscience train --metrics-port``: a running trainer exports its rounds for Prometheus."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from app.adapter_registry import AdapterRegistry
from app.queue import open_queue
from tests.trainer.trainer_helpers import TrainerProcess, make_pairs, trainer_options
from trainer.config import TrainerConfig


def sample(text: str, name: str) -> float | None:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_a_running_trainer_exports_rounds_pairs_loss_and_last_publish(demo_model, tmp_path):
    options = trainer_options(demo_model, tmp_path, metrics_port="0", heldout_fraction="0")
    with open_queue(options["queue"]) as queue:
        queue.produce(make_pairs(12))
    trainer = TrainerProcess(options, tmp_path / "trainer.err")
    try:
        port = int(trainer.wait_line("stage=metrics port=", timeout=120).split("port=")[1])
        url = f"http://127.0.0.1:{port}/metrics"
        trainer.wait_line("stage=acked version=v000001", timeout=240)
        text = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the counters are set just after the log line
            text = httpx.get(url).text
            if sample(text, "conscience_trainer_last_version") == 1:
                break
            time.sleep(0.2)
    finally:
        trainer.kill()
    published = AdapterRegistry(options["adapters"]).read_manifest().entry("v000001")
    assert sample(text, 'conscience_trainer_rounds_total{outcome="published"}') == 1
    assert sample(text, 'conscience_trainer_pairs_total{kind="trained"}') == 12
    assert sample(text, "conscience_trainer_leased_total") == 12
    assert sample(text, "conscience_trainer_last_loss") == pytest.approx(published.metrics["loss"])
    assert sample(text, "conscience_trainer_last_publish_timestamp_seconds") == pytest.approx(
        published.created_at, abs=60
    )
    assert sample(text, "conscience_trainer_round_seconds_count") == 1
    assert sample(text, "process_resident_memory_bytes") > 0


def test_metrics_port_is_off_by_default_and_bounded():
    assert TrainerConfig().metrics_port is None
    with pytest.raises(ValueError, match="metrics_port"):
        TrainerConfig(metrics_port=70000)
