"""The engine gate: generations share it, scoring holds it alone and is not starved."""

from __future__ import annotations

import asyncio

from app.engine_gate import EngineGate


async def test_exclusive_waits_for_shared_and_blocks_new_shared():
    gate, events = EngineGate(), []

    async def shared(name: str, hold: float) -> None:
        async with gate.shared():
            events.append(f"{name}+")
            await asyncio.sleep(hold)
            events.append(f"{name}-")

    async def exclusive() -> None:
        async with gate.exclusive():
            events.append("X+")
            await asyncio.sleep(0.01)
            events.append("X-")

    first = asyncio.create_task(shared("a", 0.05))
    await asyncio.sleep(0.01)
    writer = asyncio.create_task(exclusive())
    await asyncio.sleep(0.01)
    late = asyncio.create_task(shared("b", 0.0))  # arrives while the writer waits
    await asyncio.gather(first, writer, late)
    assert events == ["a+", "a-", "X+", "X-", "b+", "b-"]


async def test_shared_holders_overlap():
    gate, inside, peak = EngineGate(), 0, 0

    async def hold() -> None:
        nonlocal inside, peak
        async with gate.shared():
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(hold() for _ in range(4)))
    assert peak == 4
