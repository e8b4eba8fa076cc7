"""SQLite backend: one WAL-mode file, durable on commit, shared by many processes.

Each record's JSON sits beside its delivery bookkeeping: ``state`` goes ready -> leased ->
acked, and a lease whose ``lease_until`` has passed counts as ready again. Leases are taken
inside ``BEGIN IMMEDIATE`` so two consumers never get the same live record.

Filters: framework / verdict / min_score are applied in SQL (same rules as
``PairFilter.accepts``); ``max_per_prompt`` caps the records sharing a prompt that one lease
call returns. Records a filter skips stay ready for other consumers and later calls.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path

from app.metrics import QUEUE_REDELIVERIES
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

BUSY_TIMEOUT_S = 10.0
_PAGE = 500

# Append-only: a step, once released, is never edited; schema changes add a new step.
MIGRATIONS: list[tuple[str, tuple[str, ...]]] = [
    (
        "0001_records",
        (
            """CREATE TABLE records (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                body TEXT NOT NULL,
                schema_version INTEGER NOT NULL,
                framework TEXT NOT NULL,
                verdict TEXT NOT NULL,
                score REAL,
                prompt_key TEXT NOT NULL,
                created_at REAL NOT NULL,
                state TEXT NOT NULL DEFAULT 'ready'
                    CHECK (state IN ('ready', 'leased', 'acked')),
                lease_until REAL,
                consumer TEXT,
                deliveries INTEGER NOT NULL DEFAULT 0,
                acked_at REAL
            )""",
            "CREATE INDEX records_state_seq ON records (state, seq)",
            "CREATE INDEX records_acked_at ON records (acked_at) WHERE state = 'acked'",
        ),
    ),
    (
        "0002_review",
        (
            "ALTER TABLE records ADD COLUMN review TEXT NOT NULL DEFAULT 'pending'"
            " CHECK (review IN ('pending', 'approved', 'rejected'))",
            "ALTER TABLE records ADD COLUMN edited INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE records ADD COLUMN reviewed_at REAL",
        ),
    ),
]

_LIVE_LEASE = "state = 'leased' AND lease_until > :now"
_EXPIRED_LEASE = "state = 'leased' AND lease_until <= :now"


def _prompt_hash(record: PairRecord) -> str:
    return hashlib.sha256(record.prompt_key().encode()).hexdigest()


def _filter_sql(filters: PairFilter | None) -> tuple[str, dict[str, object]]:
    """SQL conditions equivalent to ``PairFilter.accepts``."""
    if filters is None:
        return "", {}
    sql, params = "", {}
    for column, values in (("framework", filters.frameworks), ("verdict", filters.verdicts)):
        if values:
            names = [f"{column}{i}" for i in range(len(values))]
            sql += f" AND {column} IN ({', '.join(':' + n for n in names)})"
            params.update(zip(names, values, strict=True))
    if filters.min_score is not None:
        sql += " AND COALESCE(score, 0.0) >= :min_score"
        params["min_score"] = filters.min_score
    if filters.approved_only:
        sql += " AND review = 'approved'"
    return sql, params


class SqliteQueue(PairQueue):
    """A pair queue in one SQLite file (``sqlite:///PATH``)."""

    def __init__(self, path: str | Path, *, url: str | None = None) -> None:
        self.path = Path(path)
        self.url = url or f"sqlite:///{self.path}"
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                self._conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
                self._migrate()
            except BaseException:
                self.close()
                raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite and file-system errors into ``QueueError`` naming the file."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            raise QueueError(f"SQLite queue {self.path}: {exc}") from exc

    @contextmanager
    def _tx(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction under the connection lock."""
        with self._lock, self._errors():
            if self._conn is None:
                raise QueueError(f"SQLite queue {self.path} is closed")
            conn = self._conn
            conn.execute(begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise

    def _migrate(self) -> None:
        with self._tx() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at REAL)"
            )
            done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
            for name, statements in MIGRATIONS:
                if name in done:
                    continue
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))

    def produce(self, records: Sequence[PairRecord]) -> None:
        """Insert records in one durable transaction; ids already present are skipped."""
        rows = [
            (
                r.id,
                r.model_dump_json(),
                r.schema_version,
                r.framework,
                r.verdict,
                r.score,
                _prompt_hash(r),
                r.created_at,
            )
            for r in records
        ]
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO records (id, body, schema_version, framework, verdict,"
                " score, prompt_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def _ready(
        self, conn: sqlite3.Connection, now: float, filters: PairFilter | None
    ) -> Iterator[tuple[int, str, str, int]]:
        """Ready rows in lease order: expired leases first, then never leased, by seq."""
        where, params = _filter_sql(filters)
        for state in (_EXPIRED_LEASE, "state = 'ready'"):
            yield from conn.execute(
                f"SELECT seq, body, prompt_key, deliveries FROM records"
                f" WHERE {state}{where} ORDER BY seq",
                {"now": now, **params},
            )

    def lease(
        self,
        n: int,
        lease_s: float,
        *,
        consumer: str,
        filters: PairFilter | None = None,
    ) -> list[Leased]:
        """Lease up to ``n`` ready records, honouring ``filters`` (see the module docstring)."""
        cap = filters.max_per_prompt if filters else None
        now = time.time()
        picked: list[tuple[int, str, int]] = []
        per_prompt: dict[str, int] = {}
        with self._tx() as conn:
            for seq, body, prompt_key, deliveries in self._ready(conn, now, filters):
                if len(picked) >= n:
                    break
                if cap is None or per_prompt.get(prompt_key, 0) < cap:
                    per_prompt[prompt_key] = per_prompt.get(prompt_key, 0) + 1
                    picked.append((seq, body, deliveries + 1))
            conn.executemany(
                "UPDATE records SET state = 'leased', lease_until = ?, consumer = ?,"
                " deliveries = deliveries + 1 WHERE seq = ?",
                [(now + lease_s, consumer, seq) for seq, _, _ in picked],
            )
        leased = [
            Leased(record=PairRecord.model_validate_json(body), deliveries=d)
            for _, body, d in picked
        ]
        QUEUE_REDELIVERIES.inc(sum(1 for item in leased if item.deliveries > 1))
        return leased

    def ack(self, ids: Sequence[str]) -> None:
        """Mark leased records acked (expired leases included); other ids are ignored."""
        now = time.time()
        with self._tx() as conn:
            conn.executemany(
                "UPDATE records SET state = 'acked', acked_at = ?, lease_until = NULL"
                " WHERE id = ? AND state = 'leased'",
                [(now, record_id) for record_id in ids],
            )

    def stats(self) -> QueueStats:
        """Counts over the whole table; ``by_framework`` counts unacked records."""
        now = time.time()
        with self._tx("BEGIN") as conn:
            depth, leased, acked, oldest = conn.execute(
                f"SELECT COUNT(*) FILTER (WHERE state = 'ready' OR ({_EXPIRED_LEASE})),"
                f" COUNT(*) FILTER (WHERE {_LIVE_LEASE}),"
                " COUNT(*) FILTER (WHERE state = 'acked'),"
                " MIN(created_at) FILTER (WHERE state != 'acked') FROM records",
                {"now": now},
            ).fetchone()
            by_framework = dict(
                conn.execute(
                    "SELECT framework, COUNT(*) FROM records WHERE state != 'acked'"
                    " GROUP BY framework ORDER BY framework"
                ).fetchall()
            )
        return QueueStats(
            depth=depth,
            leased=leased,
            acked=acked,
            oldest_age_s=None if oldest is None else max(0.0, now - oldest),
            by_framework=by_framework,
        )

    def peek(self, n: int) -> list[PairRecord]:
        """The next ``n`` ready records in lease order."""
        with self._tx("BEGIN") as conn:
            rows = islice(self._ready(conn, time.time(), None), max(n, 0))
            bodies = [body for _, body, _, _ in rows]
        return [PairRecord.model_validate_json(body) for body in bodies]

    def records(self, *, include_acked: bool = False) -> Iterator[PairRecord]:
        """Every record in produce order, read in pages (no lock held between pages)."""
        state = "" if include_acked else " AND state != 'acked'"
        last = 0
        while True:
            with self._tx("BEGIN") as conn:
                rows = conn.execute(
                    f"SELECT seq, body FROM records WHERE seq > ?{state} ORDER BY seq LIMIT ?",
                    (last, _PAGE),
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield from (PairRecord.model_validate_json(body) for _, body in rows)

    def requeue(self, consumer: str | None = None) -> int:
        """Make every live lease (only ``consumer``'s when given) ready now; return how many."""
        mine = "" if consumer is None else " AND consumer = :consumer"
        with self._tx() as conn:
            return conn.execute(
                f"UPDATE records SET state = 'ready', lease_until = NULL, consumer = NULL"
                f" WHERE {_LIVE_LEASE}{mine}",
                {"now": time.time(), "consumer": consumer},
            ).rowcount

    def prune(self, *, max_acked: int | None = None, max_age_s: float | None = None) -> int:
        """Delete acked records by age and/or beyond the newest ``max_acked``."""
        removed = 0
        with self._tx() as conn:
            if max_age_s is not None:
                removed += conn.execute(
                    "DELETE FROM records WHERE state = 'acked' AND acked_at < ?",
                    (time.time() - max_age_s,),
                ).rowcount
            if max_acked is not None:
                removed += conn.execute(
                    "DELETE FROM records WHERE seq IN (SELECT seq FROM records"
                    " WHERE state = 'acked' ORDER BY acked_at DESC, seq DESC LIMIT -1 OFFSET ?)",
                    (max_acked,),
                ).rowcount
        return removed

    def review(self, record_id: str, state: ReviewState, *, chosen: str | None = None) -> bool:
        """Store a reviewer's decision (and edit); ``rejected`` retires an unacked record."""
        now = time.time()
        with self._tx() as conn:
            row = conn.execute("SELECT body FROM records WHERE id = ?", (record_id,)).fetchone()
            if row is None:
                return False
            body = row[0]
            if chosen is not None:
                body = with_chosen(PairRecord.model_validate_json(body), chosen).model_dump_json()
            conn.execute(
                "UPDATE records SET review = ?, reviewed_at = ?, body = ?, edited = edited OR ?"
                " WHERE id = ?",
                (state, now, body, chosen is not None, record_id),
            )
            if state == "rejected":
                conn.execute(
                    "UPDATE records SET state = 'acked', acked_at = ?, lease_until = NULL"
                    " WHERE id = ? AND state != 'acked'",
                    (now, record_id),
                )
        return True

    def reviews(self, ids: Sequence[str]) -> dict[str, PairReview]:
        """Review state of each known id."""
        found: dict[str, PairReview] = {}
        with self._tx("BEGIN") as conn:
            for start in range(0, len(ids), _PAGE):
                chunk = list(ids[start : start + _PAGE])
                marks = ", ".join("?" * len(chunk))
                for rid, review, edited, at in conn.execute(
                    f"SELECT id, review, edited, reviewed_at FROM records WHERE id IN ({marks})",
                    chunk,
                ):
                    found[rid] = PairReview(state=review, edited=bool(edited), reviewed_at=at)
        return found

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
