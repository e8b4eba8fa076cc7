"""A shared/exclusive gate over the engine's steps (a writer-preferring readers-writer lock).

vLLM 0.32's CPU build with LoRA enabled dies ("einsum(): subscript b has size N") when one
engine step batches a prompt-logprob request with any other request. Generations hold the
gate shared (they batch freely); prompt-logprob scoring holds it exclusive, so it runs alone.
A waiting exclusive holder blocks new shared ones, so scoring is not starved under load.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class EngineGate:
    """Shared for generations, exclusive for prompt-logprob scoring."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(lambda: not self._exclusive and not self._waiting)
            self._shared += 1
        try:
            yield
        finally:
            async with self._changed:
                self._shared -= 1
                self._changed.notify_all()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._changed:
            self._waiting += 1
            try:
                await self._changed.wait_for(lambda: not self._exclusive and not self._shared)
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            async with self._changed:
                self._exclusive = False
                self._changed.notify_all()
