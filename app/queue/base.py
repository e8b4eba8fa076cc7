"""The pair queue interface both backends implement (SQLite file, Redis Streams).

At-least-once delivery: ``lease`` hands records out for ``lease_s`` seconds; ``ack`` retires
them; an expired lease is handed out again. Consumers dedupe by record id.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from pydantic import BaseModel, Field

from app.records import PairRecord


class QueueError(RuntimeError):
    """The queue backend failed (unreachable, corrupt, misconfigured)."""


class PairFilter(BaseModel):
    """What a consumer wants to lease."""

    frameworks: list[str] | None = None
    min_score: float | None = Field(None, ge=0, le=1)
    verdicts: list[str] | None = None
    max_per_prompt: int | None = Field(None, ge=1)

    def accepts(self, record: PairRecord) -> bool:
        """Whether one record passes the framework / score / verdict filters."""
        if self.frameworks and record.framework not in self.frameworks:
            return False
        if self.min_score is not None and (record.score or 0.0) < self.min_score:
            return False
        return not (self.verdicts and record.verdict not in self.verdicts)


class Leased(BaseModel):
    """A leased record with its delivery bookkeeping."""

    record: PairRecord
    deliveries: int = Field(1, ge=1, description="How many times it has been leased.")


class QueueStats(BaseModel):
    """A snapshot of the queue."""

    depth: int = Field(description="Records ready to lease.")
    leased: int
    acked: int
    oldest_age_s: float | None = Field(description="Age of the oldest unacked record.")
    by_framework: dict[str, int] = Field(default_factory=dict)


class PairQueue(ABC):
    """A durable queue of pair records."""

    url: str

    @abstractmethod
    def produce(self, records: Sequence[PairRecord]) -> None:
        """Append records; they are durable once this returns."""

    @abstractmethod
    def lease(
        self,
        n: int,
        lease_s: float,
        *,
        consumer: str,
        filters: PairFilter | None = None,
    ) -> list[Leased]:
        """Hand out up to ``n`` records (expired leases first) for ``lease_s`` seconds."""

    @abstractmethod
    def ack(self, ids: Sequence[str]) -> None:
        """Retire leased records; unknown or already-acked ids are ignored."""

    @abstractmethod
    def stats(self) -> QueueStats:
        """Counts and age of the oldest unacked record."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
