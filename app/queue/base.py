"""The pair queue interface both backends implement (SQLite file, Redis Streams).

At-least-once delivery: ``lease`` hands records out for ``lease_s`` seconds; ``ack`` retires
them; an expired lease is handed out again. Consumers dedupe by record id.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, ValidationError

from app.records import PairRecord


class QueueError(RuntimeError):
    """The queue backend failed (unreachable, corrupt, misconfigured)."""


class PairFilter(BaseModel):
    """What a consumer wants to lease."""

    frameworks: list[str] | None = None
    min_score: float | None = Field(None, ge=0, le=1)
    verdicts: list[str] | None = None
    max_per_prompt: int | None = Field(None, ge=1)
    approved_only: bool = Field(
        False, description="Lease only records a reviewer approved (trainer --require-approval)."
    )

    def accepts(self, record: PairRecord) -> bool:
        """Whether one record passes the framework / score / verdict filters."""
        if self.frameworks and record.framework not in self.frameworks:
            return False
        if self.min_score is not None and (record.score or 0.0) < self.min_score:
            return False
        return not (self.verdicts and record.verdict not in self.verdicts)


ReviewState = Literal["pending", "approved", "rejected"]


class PairReview(BaseModel):
    """A human reviewer's decision on one record (the reviewer console writes it).

    ``pending`` until someone decides; ``approved`` records are what a trainer with
    ``--require-approval`` leases; ``rejected`` records are retired (counted as acked, never
    leased). An edit replaces the chosen answer the trainer sees; ``edited`` says so.
    """

    state: ReviewState = "pending"
    edited: bool = False
    reviewed_at: float | None = None


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

    @abstractmethod
    def peek(self, n: int) -> list[PairRecord]:
        """The next ``n`` ready records, in lease order, without leasing them."""

    @abstractmethod
    def records(self, *, include_acked: bool = False) -> Iterator[PairRecord]:
        """Every record (unacked only unless ``include_acked``), oldest produced first."""

    @abstractmethod
    def requeue(self, consumer: str | None = None) -> int:
        """Release every live lease (only ``consumer``'s when given) so those records are
        ready now, keeping their delivery counts; return how many.

        A restarted consumer calls ``requeue(its_name)`` to take back at once what its dead
        predecessor leased, instead of waiting for those leases to expire; other consumers'
        leases are left alone. Names must therefore be unique among live consumers.
        """

    @abstractmethod
    def prune(self, *, max_acked: int | None = None, max_age_s: float | None = None) -> int:
        """Delete acked records beyond the newest ``max_acked`` or acked over ``max_age_s``
        seconds ago; return how many were deleted. Unacked records are never pruned."""

    @abstractmethod
    def review(self, record_id: str, state: ReviewState, *, chosen: str | None = None) -> bool:
        """Record a reviewer's decision on one record, and with ``chosen`` replace the text of
        its chosen answer (its last message); ``rejected`` also retires the record. Return
        False when the id is unknown."""

    @abstractmethod
    def reviews(self, ids: Sequence[str]) -> dict[str, PairReview]:
        """The review state of each known id (``pending`` when nobody decided yet)."""

    def export(self, path: str | Path, *, include_acked: bool = False) -> int:
        """Write records as TRL preference JSONL (one ``PairRecord`` per line); return count."""
        return _write_jsonl(Path(path), self.records(include_acked=include_acked))

    def import_records(self, path: str | Path) -> int:
        """Produce every record of a JSONL file (marked ``source="import"``); return count.

        Every line is validated first: one malformed line raises ``QueueError`` naming its
        number and nothing is produced. Ids already in the queue are skipped (idempotent).
        """
        records = [r.model_copy(update={"source": "import"}) for r in _read_jsonl(Path(path))]
        self.produce(records)
        return len(records)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def with_chosen(record: PairRecord, text: str) -> PairRecord:
    """``record`` with the text of its chosen answer (the last chosen message) replaced."""
    chosen = list(record.chosen)
    chosen[-1] = chosen[-1].model_copy(update={"content": text})
    return record.model_copy(update={"chosen": chosen})


def _write_jsonl(path: Path, records: Iterator[PairRecord]) -> int:
    """Write records one JSON object per line, atomically (temp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(record.model_dump_json() + "\n")
                count += 1
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise QueueError(f"cannot write {path}: {exc}") from exc
        raise
    return count


def _read_jsonl(path: Path) -> list[PairRecord]:
    """Parse and validate every line (blank lines skipped) before returning any record."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise QueueError(f"cannot read {path}: {exc}") from exc
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(PairRecord.model_validate_json(line))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            raise QueueError(
                f"{path}, line {number}: invalid record ({where}: {first['msg']}); nothing imported"
            ) from exc
    return records
