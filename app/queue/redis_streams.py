"""Redis Streams backend: ``redis://host:port/db[?stream=NAME]``.

- Every consumer joins one consumer group (``consumers``), so each record is leased to one
  consumer at a time; ``ack`` is ``XACK`` by record id, remembered in an ``acked`` zset (an
  acked entry seen again, e.g. after the group was recreated, is skipped).
- Leases: a claimed entry's idle time is set to ``HORIZON - lease_s``, and consumers claim
  entries idle at least ``HORIZON`` (``XAUTOCLAIM``) before reading new ones, so a lease ends
  exactly ``lease_s`` after it was taken, whatever ``lease_s`` the next consumer uses.
  ``lease_s`` may not exceed ``HORIZON_MS`` (24 h). Deliveries are the PEL delivery counts.
- Filters run in the client (``PairFilter.accepts``, then ``max_per_prompt`` per lease call).
  Entries a consumer skips are released at once (idle set to ``HORIZON``, delivery count
  restored), so they stay ready for every consumer and are neither lost nor acked. If the
  consumer dies between claim and release they come back when that lease ends.
- Durability: ``produce`` returns once Redis has applied it (one atomic script call; one
  ``MULTI`` above 256 records); surviving a Redis crash depends on the server's persistence
  (``appendonly yes`` with ``appendfsync always`` for every write). Opening a queue on a
  Redis configured otherwise logs a warning once (when ``CONFIG GET`` is allowed).
- Idempotence: produce skips ids present in the ``ids`` hash (pruned ids may come back).
- Connections: redis-py retries with backoff and reconnects on connection errors and
  timeouts; every script is idempotent, so a retry after a lost reply never duplicates.
  What still fails is a ``QueueError``.
- Reviews (the reviewer console): a ``reviews`` hash maps a record id to its ``PairReview``
  plus any edited chosen text; edits are laid over records as they are read (stream entries
  are never rewritten); ``approved_only`` is checked in the client like the other filters; a
  rejected record is retired like an acked one (one script).
- Restart: ``requeue(consumer)`` releases that consumer's live pending entries at once
  (one script: ``XPENDING`` filtered by consumer, ``XCLAIM ... IDLE HORIZON JUSTID``).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from pydantic import ValidationError
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.exceptions import ConnectionError, RedisError, ResponseError, TimeoutError
from redis.retry import Retry

from app.metrics import QUEUE_REDELIVERIES
from app.queue import redis_lua
from app.queue.base import (
    Leased,
    PairFilter,
    PairQueue,
    PairReview,
    QueueError,
    QueueStats,
    ReviewState,
    with_chosen,
)
from app.records import PairRecord

log = logging.getLogger(__name__)
_warned: set[str] = set()  # URLs already warned about (once per process)

HORIZON_MS = 86_400_000
GROUP = "consumers"
DEFAULT_STREAM = "conscience:pairs"
_CHUNK = 256
_PAGE = 500
T = TypeVar("T")


class _Keys(NamedTuple):
    stream: str
    ids: str
    acked: str
    unacked: str
    frameworks: str
    reviews: str


def _split_url(url: str) -> tuple[str, str, str]:
    """(connection URL without ``stream``, stream name, URL safe to print)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query)
    stream = next((v for k, v in query if k == "stream"), DEFAULT_STREAM)
    rest = urlencode([(k, v) for k, v in query if k != "stream"])
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", ":***@")
    safe = urlunsplit(parts._replace(netloc=netloc))
    return urlunsplit(parts._replace(query=rest)), stream, safe


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class RedisStreamsQueue(PairQueue):
    """A pair queue on a Redis stream (see the module docstring for the semantics)."""

    def __init__(self, url: str) -> None:
        self.url = url
        conn_url, stream, self._safe_url = _split_url(url)
        tag = "{" + stream + "}"
        self._keys = _Keys(*(f"{tag}:{name}" for name in _Keys._fields))
        try:
            pool = redis.ConnectionPool.from_url(
                conn_url,
                decode_responses=True,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=5),
                retry_on_error=[ConnectionError, TimeoutError],
                socket_timeout=10,
                socket_connect_timeout=5,
                health_check_interval=15,
                client_name=f"conscience-queue:{stream}",
            )
        except ValueError as exc:
            raise QueueError(f"invalid Redis queue URL {self._safe_url}: {exc}") from exc
        self._redis = redis.Redis.from_pool(pool)
        self._scripts = {
            name: self._redis.register_script(getattr(redis_lua, name))
            for name in ("PRODUCE", "LEASE", "ACK", "PRUNE", "RELEASE", "RETIRE")
        }
        try:
            self._run(self._ensure_group)
        except QueueError:
            self.close()
            raise
        if self._safe_url not in _warned and (warning := self.persistence_warning()):
            _warned.add(self._safe_url)
            log.warning(warning)

    def persistence_warning(self) -> str | None:
        """Why a Redis crash could lose produced pairs (AOF off, or not fsynced per write);
        None when durable or when ``CONFIG GET`` is not allowed (managed Redis)."""
        try:
            config = self._redis.config_get("append*")
        except RedisError:
            return None
        appendonly, fsync = config.get("appendonly"), config.get("appendfsync")
        if appendonly == "yes" and fsync == "always":
            return None
        return (
            f"Redis queue {self._safe_url}: appendonly={appendonly} appendfsync={fsync}; a Redis"
            " crash can lose pairs the queue acknowledged (set appendonly yes, appendfsync always)"
        )

    def _ensure_group(self) -> None:
        try:
            self._redis.xgroup_create(self._keys.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call redis; recreate a vanished group once; turn errors into ``QueueError``."""
        try:
            try:
                return fn(*args, **kwargs)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._ensure_group()
                return fn(*args, **kwargs)
        except RedisError as exc:
            raise QueueError(f"Redis queue {self._safe_url}: {exc}") from exc

    def _script(self, name: str, keys: Sequence[str], args: Sequence[Any], client: Any) -> Any:
        return self._scripts[name](keys=list(keys), args=list(args), client=client)

    def _scripted(self, name: str, keys: Sequence[str], calls: list[list[Any]]) -> list[Any]:
        """Run a script once per argument list: directly when there is one (a script is
        atomic), else all in one ``MULTI``."""
        if len(calls) == 1:
            return [self._run(self._script, name, keys, calls[0], self._redis)]

        def build(pipe: Pipeline) -> None:
            for args in calls:
                self._script(name, keys, args, pipe)

        return self._pipeline(build)

    def _pipeline(self, build: Callable[[Pipeline], object], transaction: bool = True) -> list:
        """Run the commands ``build`` queues, as one ``MULTI`` unless told otherwise."""

        def execute() -> list:
            pipe = self._redis.pipeline(transaction=transaction)
            build(pipe)
            return pipe.execute()

        return self._run(execute)

    def produce(self, records: Sequence[PairRecord]) -> None:
        """Append new ids in one ``MULTI`` (ids already present are skipped)."""
        if not records:
            return
        k = self._keys
        calls = [
            [x for r in chunk for x in (r.id, repr(r.created_at), r.framework, r.model_dump_json())]
            for chunk in _chunks(records)
        ]
        self._scripted("PRODUCE", (k.stream, k.ids, k.unacked, k.frameworks), calls)

    def lease(
        self,
        n: int,
        lease_s: float,
        *,
        consumer: str,
        filters: PairFilter | None = None,
    ) -> list[Leased]:
        """Claim expired/released entries, then new ones, until ``n`` pass ``filters``."""
        if not 0 <= lease_s * 1000 <= HORIZON_MS:
            raise QueueError(f"lease_s must be between 0 and {HORIZON_MS // 1000} on Redis")
        idle_ms = HORIZON_MS - int(lease_s * 1000)
        matched: list[Leased] = []
        skipped: list[tuple[str, int]] = []
        per_prompt: Counter[str] = Counter()
        cursor = "0-0"
        try:
            while len(matched) < n:
                want = n - len(matched)
                args = (GROUP, consumer, HORIZON_MS, idle_ms, want, cursor)
                keys = (self._keys.stream, self._keys.acked)
                cursor, entries, scanned = self._run(self._script, "LEASE", keys, args, self._redis)
                parsed = [self._parse(eid, body) for eid, body, _ in entries]
                states = self._review_marks([r.id for r in parsed])
                for (eid, _, deliveries), record in zip(entries, parsed, strict=True):
                    record, approved = _overlay(record, states.get(record.id))
                    if (approved or not (filters and filters.approved_only)) and _wanted(
                        record, filters, per_prompt
                    ):
                        matched.append(Leased(record=record, deliveries=deliveries))
                    else:
                        skipped.append((eid, deliveries - 1))
                if cursor == "" and scanned < want:
                    break
        finally:
            self._release(consumer, skipped)
        QUEUE_REDELIVERIES.inc(sum(1 for item in matched if item.deliveries > 1))
        return matched

    def _parse(self, eid: str, body: str) -> PairRecord:
        try:
            return PairRecord.model_validate_json(body)
        except ValidationError as exc:
            raise QueueError(f"Redis queue {self._safe_url}: entry {eid}: {exc}") from exc

    def _release(self, consumer: str, entries: Sequence[tuple[str, int]]) -> None:
        """Make entries ready now, keeping their delivery counts (``JUSTID`` adds none)."""
        if not entries:
            return

        def build(pipe: Pipeline) -> None:
            for eid, deliveries in entries:
                pipe.xclaim(
                    self._keys.stream,
                    GROUP,
                    consumer,
                    0,
                    [eid],
                    idle=HORIZON_MS,
                    retrycount=deliveries,
                    justid=True,
                )

        self._pipeline(build, transaction=False)

    def ack(self, ids: Sequence[str]) -> None:
        """``XACK`` leased records by id; unknown or already-acked ids are ignored."""
        if not ids:
            return
        k = self._keys
        calls = [[GROUP, time.time(), *chunk] for chunk in _chunks(list(ids))]
        self._scripted("ACK", (k.stream, k.ids, k.acked, k.unacked, k.frameworks), calls)

    def _pending(self, idle: int | None = None) -> Iterator[dict[str, Any]]:
        """PEL entries (optionally only those idle at least ``idle`` ms), in id order."""
        start = "-"
        while True:
            page = self._run(
                self._redis.xpending_range, self._keys.stream, GROUP, start, "+", _PAGE, idle=idle
            )
            yield from page
            if len(page) < _PAGE:
                return
            start = "(" + page[-1]["message_id"]

    def stats(self) -> QueueStats:
        """Counts from the stream, the PEL and the bookkeeping keys."""
        k = self._keys

        def build(pipe: Pipeline) -> None:
            pipe.xlen(k.stream)
            pipe.xpending(k.stream, GROUP)
            pipe.zcard(k.acked)
            pipe.zrange(k.unacked, 0, 0, withscores=True)
            pipe.hgetall(k.frameworks)

        total, pending, acked, oldest, frameworks = self._pipeline(build)
        ready_pending = sum(1 for _ in self._pending(idle=HORIZON_MS))
        undelivered = max(0, total - pending["pending"] - acked)
        return QueueStats(
            depth=undelivered + ready_pending,
            leased=max(0, pending["pending"] - ready_pending),
            acked=acked,
            oldest_age_s=max(0.0, time.time() - oldest[0][1]) if oldest else None,
            by_framework={fw: int(c) for fw, c in sorted(frameworks.items())},
        )

    def _entries(self, eids: Sequence[str]) -> list[PairRecord]:
        def build(pipe: Pipeline) -> None:
            for eid in eids:
                pipe.xrange(self._keys.stream, eid, eid)

        found = [rows[0] for rows in self._pipeline(build, transaction=False) if rows]
        return self._edited([self._parse(eid, fields["r"]) for eid, fields in found])

    def peek(self, n: int) -> list[PairRecord]:
        """Ready records in lease order: released/expired entries, then undelivered ones."""
        ready = [p["message_id"] for p in islice(self._pending(idle=HORIZON_MS), max(n, 0))]
        records = self._entries(ready)
        if len(records) < n:
            groups = self._run(self._redis.xinfo_groups, self._keys.stream)
            last = next((g["last-delivered-id"] for g in groups if g["name"] == GROUP), "0-0")
            rows = self._run(
                self._redis.xrange, self._keys.stream, f"({last}", "+", n - len(records)
            )
            records += self._edited([self._parse(eid, fields["r"]) for eid, fields in rows])
        return records

    def records(self, *, include_acked: bool = False) -> Iterator[PairRecord]:
        """Every record in stream order, read in pages."""
        start = "-"
        while True:
            rows = self._run(self._redis.xrange, self._keys.stream, start, "+", _PAGE)
            if not rows:
                return
            start = "(" + rows[-1][0]
            parsed = [self._parse(eid, fields["r"]) for eid, fields in rows]
            if not include_acked:
                scores = self._run(self._redis.zmscore, self._keys.acked, [r.id for r in parsed])
                parsed = [r for r, score in zip(parsed, scores, strict=True) if score is None]
            yield from self._edited(parsed)

    def requeue(self, consumer: str | None = None) -> int:
        """Release every live lease (idle below ``HORIZON``; only ``consumer``'s pending
        entries when given) in one atomic script; return how many."""
        args = (GROUP, HORIZON_MS, _PAGE, consumer or "")
        return self._run(self._script, "RELEASE", (self._keys.stream,), args, self._redis)

    def prune(self, *, max_acked: int | None = None, max_age_s: float | None = None) -> int:
        """Delete acked records by age and/or beyond the newest ``max_acked``."""
        k = self._keys
        victims: set[str] = set()
        if max_age_s is not None:
            cutoff = f"({time.time() - max_age_s}"
            victims.update(self._run(self._redis.zrangebyscore, k.acked, "-inf", cutoff))
        if max_acked is not None:
            victims.update(self._run(self._redis.zrange, k.acked, 0, -max_acked - 1))
        if not victims:
            return 0
        calls = [list(chunk) for chunk in _chunks(sorted(victims))]
        removed = sum(self._scripted("PRUNE", (k.stream, k.ids, k.acked), calls))
        self._run(self._redis.hdel, k.reviews, *victims)
        return removed

    def _review_marks(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored review marks (state, edit) of ``ids`` that have one."""
        if not ids:
            return {}
        values = self._run(self._redis.hmget, self._keys.reviews, list(ids))
        return {rid: json.loads(v) for rid, v in zip(ids, values, strict=True) if v}

    def _edited(self, records: list[PairRecord]) -> list[PairRecord]:
        marks = self._review_marks([r.id for r in records])
        return [_overlay(r, marks.get(r.id))[0] for r in records]

    def review(self, record_id: str, state: ReviewState, *, chosen: str | None = None) -> bool:
        """Store a reviewer's decision (and edit); ``rejected`` retires the record."""
        k = self._keys
        if not self._run(self._redis.hexists, k.ids, record_id):
            return False
        mark = self._review_marks([record_id]).get(record_id, {})
        mark.update(state=state, reviewed_at=time.time())
        if chosen is not None:
            mark.update(chosen=chosen, edited=True)
        self._run(self._redis.hset, k.reviews, record_id, json.dumps(mark))
        if state == "rejected":
            keys = (k.stream, k.ids, k.acked, k.unacked, k.frameworks)
            self._run(self._script, "RETIRE", keys, (GROUP, time.time(), record_id), self._redis)
        return True

    def reviews(self, ids: Sequence[str]) -> dict[str, PairReview]:
        """Review state of each known id."""
        ids = list(ids)
        known = self._run(self._redis.hmget, self._keys.ids, ids) if ids else []
        marks = self._review_marks(ids)
        return {
            rid: PairReview(**{k: v for k, v in marks.get(rid, {}).items() if k != "chosen"})
            for rid, eid in zip(ids, known, strict=True)
            if eid
        }

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()


def _overlay(record: PairRecord, mark: dict[str, Any] | None) -> tuple[PairRecord, bool]:
    """(the record with any edited chosen text, whether it is approved)."""
    if not mark:
        return record, False
    if mark.get("chosen") is not None:
        record = with_chosen(record, mark["chosen"])
    return record, mark.get("state") == "approved"


def _wanted(record: PairRecord, filters: PairFilter | None, per_prompt: Counter[str]) -> bool:
    """Whether a lease call takes ``record``: the filter, then the per-prompt cap."""
    if filters is None:
        return True
    if not filters.accepts(record):
        return False
    if filters.max_per_prompt is None:
        return True
    key = record.prompt_key()
    if per_prompt[key] >= filters.max_per_prompt:
        return False
    per_prompt[key] += 1
    return True
