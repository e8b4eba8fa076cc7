"""Operators and the gate: a pin made while the gate measures a new version wins over the
promotion; a version is gated once (a sync during the run waits for it); following
again serves the version on its recorded verdict."""

from __future__ import annotations

import asyncio
import time

import httpx

from app.adapter_registry import AdapterRegistry
from tests.app.lifecycle.lifecycle_helpers import (
    ADMIN,
    ADMIN_KEY,
    GATE_MAX_TOKENS,
    publish_copy,
    wait_status,
    write_sets,
)


def test_pin_during_gate_evaluation_holds(
    serve, loop_thread, tiny_model_dir, tmp_path, trained_adapters
):
    benign, harmful = write_sets(tmp_path / "sets")
    root = tmp_path / "adapters"
    served = serve(
        model=str(tiny_model_dir),
        adapters_dir=root,
        adapter_poll_s=0.2,
        admin_key=ADMIN_KEY,
        gate=True,
        gate_benign_set=benign,
        gate_harmful_set=harmful,
        gate_max_tokens=GATE_MAX_TOKENS,
        gate_max_flag_rise=1.0,  # the tiny model's judge is noise
        gate_length_ratio_min=0.05,
        gate_length_ratio_max=20.0,
    )
    first = publish_copy(root, trained_adapters["helpful"], tiny_model_dir)
    wait_status(served.base_url, lambda s: s["current"] == first)

    manager = served.state.adapters
    gated: list[str] = []
    release = asyncio.Event()
    real_gate = manager.gate

    async def held_gate(candidate, serving):  # the real gate, started only on release
        gated.append(candidate.version)
        await release.wait()
        return await real_gate(candidate, serving)

    manager.gate = held_gate
    second = publish_copy(root, trained_adapters["helpful"], tiny_model_dir)
    deadline = time.monotonic() + 60
    while gated != [second]:
        assert time.monotonic() < deadline, gated
        time.sleep(0.1)
    # Another sync (a follow, the next poll) while the gate runs waits for it: no second run.
    queued = asyncio.run_coroutine_threadsafe(manager.sync(), loop_thread.loop)
    time.sleep(2.0)
    assert gated == [second] and not queued.done()
    pinned = httpx.post(
        f"{served.base_url}/admin/adapters/pin",
        headers=ADMIN,
        json={"version": first},
        timeout=60,
    )
    assert pinned.status_code == 200, pinned.text
    loop_thread.loop.call_soon_threadsafe(release.set)

    queued.result(300)
    registry = AdapterRegistry(root)
    deadline = time.monotonic() + 300
    while (registry.read_manifest().entry(second).gate or {}).get("verdict") != "promoted":
        assert time.monotonic() < deadline, registry.read_manifest().entry(second)
        time.sleep(0.2)
    time.sleep(1.0)  # several follower polls
    status = wait_status(served.base_url, lambda s: s["current"] == first)
    assert status["following"] is False  # the pin held after the promotion

    followed = httpx.post(f"{served.base_url}/admin/adapters/follow", headers=ADMIN, timeout=300)
    assert followed.status_code == 200, followed.text
    wait_status(served.base_url, lambda s: s["current"] == second)
    assert gated == [second]  # gated once; following again obeyed the recorded verdict
