"""The policy slot: which LoRA adapter drafts use, with in-flight tracking for hot-swaps.

Drafts take the current adapter with ``use()``; a swap replaces it atomically for new
requests and ``wait_idle`` tells when the old one is no longer used by anything in flight.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from app.engine import Adapter

CURRENT: Literal["current"] = "current"
AdapterChoice = Adapter | None | Literal["current"]


class PolicySlot:
    """Holds the adapter drafts run with (None: the base model)."""

    def __init__(self, adapter: Adapter | None = None):
        self._current = adapter
        self._in_use: Counter[str] = Counter()
        self._changed = asyncio.Condition()

    @property
    def current(self) -> Adapter | None:
        return self._current

    @asynccontextmanager
    async def use(self, choice: AdapterChoice = CURRENT) -> AsyncIterator[Adapter | None]:
        """Borrow an adapter for one draft: the current one, a given one, or None (base)."""
        chosen = self._current if choice == CURRENT else choice
        key = chosen.name if chosen else ""
        self._in_use[key] += 1
        try:
            yield chosen
        finally:
            self._in_use[key] -= 1
            async with self._changed:
                self._changed.notify_all()

    def swap(self, adapter: Adapter | None) -> Adapter | None:
        """Make ``adapter`` current for new drafts; return the previous one."""
        previous, self._current = self._current, adapter
        return previous

    async def wait_idle(self, adapter: Adapter) -> None:
        """Return once no in-flight draft uses ``adapter``."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._in_use[adapter.name] <= 0)
