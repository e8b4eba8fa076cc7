"""Drift monitors on the real engine: a refusing version slips in (no gate), the canary run
sees its refusal rate jump over the previous version's, and the manager rolls back."""

from __future__ import annotations

import httpx

from app.adapter_registry import AdapterRegistry
from app.lifecycle.measure import SetFigures
from app.lifecycle.monitor import MonitorBounds, crossed
from tests.app.lifecycle.lifecycle_helpers import (
    ADMIN_KEY,
    GATE_MAX_TOKENS,
    publish_copy,
    wait_status,
    write_sets,
)


def test_monitor_rolls_back_a_refusing_version(
    serve, loop_thread, tiny_model_dir, tmp_path, trained_adapters
):
    benign, _ = write_sets(tmp_path / "sets")
    root = tmp_path / "adapters"
    served = serve(
        model=str(tiny_model_dir),
        adapters_dir=root,
        adapter_poll_s=0.2,
        admin_key=ADMIN_KEY,
        monitor_interval_s=0.5,
        monitor_canary_set=benign,
        gate_max_tokens=GATE_MAX_TOKENS,
        monitor_max_flag_rise=1.0,  # the tiny model's judge is noise
        monitor_length_ratio_max=20.0,
        monitor_max_score_rise=1.0,
    )
    try:
        check_rollback(served, root, tiny_model_dir, trained_adapters)
    finally:  # session-scoped servers outlive the test: stop its canary runs
        loop_thread.run(served.app.state.monitor.stop())


def check_rollback(served, root, tiny_model_dir, trained_adapters) -> None:
    good = publish_copy(root, trained_adapters["helpful"], tiny_model_dir)
    wait_status(served.base_url, lambda s: s["current"] == good)
    bad = publish_copy(root, trained_adapters["refuse"], tiny_model_dir)
    status = wait_status(served.base_url, lambda s: bool(s["rollbacks"]))
    rollback = status["rollbacks"][0]
    assert rollback["version"] == bad and rollback["to"] == good
    assert "refusal_rate" in rollback["bounds"]
    assert status["current"] == good and status["following"] is True
    assert bad in status["rejected"]
    verdict = status["verdicts"][bad]
    assert verdict["verdict"] == "rolled_back_by_monitor"
    assert verdict["monitor"]["current"]["refusal_rate"] == 1.0
    assert verdict["monitor"]["previous"]["refusal_rate"] == 0.0
    assert AdapterRegistry(root).read_manifest().current == good
    text = httpx.get(f"{served.base_url}/metrics").text
    assert 'conscience_monitor_rollbacks_total{bound="refusal_rate"}' in text
    assert 'conscience_monitor_refusal_rate{slot="previous"} 0.0' in text
    # It stays rolled back: the follower never returns to the blocked version.
    wait_status(served.base_url, lambda s: s["current"] == good, limit_s=2)


def test_monitor_bounds():
    bounds = MonitorBounds(max_flag_rise=0.2, max_refusal_rise=0.2, length_ratio_max=1.5)
    before = SetFigures(8, 0.0, 20.0, 0.25, 0.3, None)
    assert crossed(SetFigures(8, 0.125, 29.0, 0.375, 0.5, None), before, bounds) == []
    after = SetFigures(8, 0.5, 31.0, 0.5, 0.6, None)
    assert crossed(after, before, bounds) == [
        "flag_rate",
        "refusal_rate",
        "mean_tokens",
        "mean_score",
    ]
