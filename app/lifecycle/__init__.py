"""Safe adapter lifecycle: the promotion gate and the drift monitors, wired into a server.

``lifecycle`` is a router lifespan (``app.admin`` carries it, so FastAPI runs it inside the
app's own lifespan, after ``ServerState.open``): it attaches a ``PromotionGate`` to the
adapter manager when ``--gate`` is on, and starts a ``DriftMonitor`` when
``--monitor-interval-s`` is set. Both measure on the serving engine in shadow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from app.lifecycle.gate import GateBounds, PromotionGate
from app.lifecycle.measure import Measurer
from app.lifecycle.monitor import DriftMonitor, MonitorBounds
from app.lifecycle.sets import benign_set, canary_set, harmful_set

log = logging.getLogger("conscience.lifecycle")


@contextlib.asynccontextmanager
async def lifecycle(app: FastAPI) -> AsyncIterator[None]:
    """Attach the gate and start the monitor for the app's server state; stop on exit."""
    state = app.state.conscience
    settings, manager = state.settings, state.adapters
    monitor: DriftMonitor | None = None
    wanted = settings.gate or settings.monitor_interval_s is not None
    if wanted and manager is None:
        log.warning("--gate / --monitor-interval-s need --adapters-dir; ignored")
    elif wanted:
        measurer = Measurer(state.pipeline, settings.gate_max_tokens)
        if settings.gate:
            manager.gate = PromotionGate(
                measurer,
                benign_set(settings.gate_benign_set, settings.gate_set_size),
                harmful_set(settings.gate_harmful_set, settings.gate_set_size),
                GateBounds.from_settings(settings),
            ).evaluate
            _warn_ungated(manager)
        if settings.monitor_interval_s is not None:
            monitor = DriftMonitor(
                manager,
                measurer,
                canary_set(settings.monitor_canary_set, settings.gate_set_size),
                MonitorBounds.from_settings(settings),
                settings.monitor_interval_s,
                settings.monitor_rollback,
            )
            app.state.monitor = monitor
            monitor.start()
    try:
        yield
    finally:
        if monitor is not None:
            await monitor.stop()
        queue = getattr(app.state, "console_queue", None)  # opened by the console on use
        if queue is not None:
            await asyncio.to_thread(queue.close)


def _warn_ungated(manager) -> None:
    """The version loaded at start was not gated (the gate attaches after it); say so."""
    manifest = manager.registry.read_manifest()
    entry = manifest.entry(manager.current) if manifest and manager.current else None
    if entry is not None and entry.gate is None:
        log.warning("adapter %s was served before the gate started (never gated)", entry.version)
        manager.history.append({"version": entry.version, "at": 0.0, "event": "served ungated"})
