"""The server's producer: a bounded in-memory buffer drained by one background thread.

``submit`` never blocks the request path: a full buffer drops the pair (counted). The thread
opens the queue lazily, writes batches, and retries failed writes with exponential backoff for
as long as it takes, so a backend that is down at start or restarts later loses nothing that
fits in the buffer. ``close`` drains what it can before its timeout and counts the rest as
shutdown drops. While idle the thread refreshes the queue depth and lag gauges.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from app.metrics import (
    QUEUE_BUFFERED,
    QUEUE_DEPTH,
    QUEUE_DROPS,
    QUEUE_LAG,
    QUEUE_PRODUCE_FAILURES,
    QUEUE_PRODUCE_LATENCY,
    QUEUE_PRODUCE_RETRIES,
    QUEUE_PRODUCED,
)
from app.queue import PairQueue, open_queue
from app.queue.redact import Redactor
from app.records import PairRecord

log = logging.getLogger(__name__)

_JOIN_GRACE_S = 15.0  # a produce call already running when close's timeout ends may finish


class QueueWriter:
    """Buffers pairs and writes them to the queue at ``queue_url`` from a background thread."""

    def __init__(
        self,
        queue_url: str,
        capacity: int = 1000,
        redactor: Redactor | None = None,
        *,
        batch_size: int = 64,
        backoff_s: tuple[float, float] = (0.05, 5.0),
        stats_interval_s: float = 15.0,
    ) -> None:
        self.queue_url = queue_url
        self._capacity = capacity
        self._redactor = redactor
        self._batch_size = batch_size
        self._backoff_s = backoff_s
        self._stats_interval_s = stats_interval_s
        self._cond = threading.Condition()
        self._buffer: deque[PairRecord] = deque()
        self._in_flight = 0
        self._submitted = 0
        self._settled = 0  # written or dropped
        self._deadline: float | None = None  # set by close
        self._thread: threading.Thread | None = None
        self._queue: PairQueue | None = None
        self._observed_at = 0.0

    def start(self) -> None:
        """Start the background thread (idempotent); the queue is opened there, lazily."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="queue-writer", daemon=True)
                self._thread.start()

    def submit(self, record: PairRecord) -> bool:
        """Buffer one pair without blocking; False (and a counted drop) when full or closed."""
        with self._cond:
            if self._deadline is not None:
                QUEUE_DROPS.labels(reason="shutdown").inc()
                return False
            if len(self._buffer) + self._in_flight >= self._capacity:
                QUEUE_DROPS.labels(reason="buffer_full").inc()
                return False
            self._buffer.append(record)
            self._submitted += 1
            QUEUE_BUFFERED.set(len(self._buffer) + self._in_flight)
            self._cond.notify_all()
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every pair submitted so far is written (or dropped); False on timeout."""
        with self._cond:
            target = self._submitted
            return self._cond.wait_for(lambda: self._settled >= target, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting pairs, drain the buffer for up to ``timeout`` s, drop the rest."""
        with self._cond:
            if self._deadline is None:
                self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            self._drop_buffer()
            return
        thread.join(timeout + _JOIN_GRACE_S)
        if thread.is_alive():
            log.error("queue writer still blocked in a produce call after close(%.1f)", timeout)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _run(self) -> None:
        try:
            while (batch := self._next_batch()) != []:
                if batch is None:
                    self._observe()
                else:
                    self._write(batch)
        finally:
            if self._queue is not None:
                self._queue.close()
                self._queue = None

    def _next_batch(self) -> list[PairRecord] | None:
        """The next batch; None after an idle wait; [] once closing with nothing left."""
        with self._cond:
            if not self._buffer and self._deadline is None:
                self._cond.wait(self._stats_interval_s)
                if not self._buffer and self._deadline is None:
                    return None
            if self._past_deadline():
                self._drop_buffer_locked()
            count = min(self._batch_size, len(self._buffer))
            batch = [self._buffer.popleft() for _ in range(count)]
            self._in_flight = count
            return batch

    def _write(self, batch: list[PairRecord]) -> None:
        """Produce one batch, retrying with backoff until written or the close deadline."""
        batch = self._redact(batch)
        delay, max_delay = self._backoff_s
        while batch:
            try:
                if self._queue is None:
                    self._queue = open_queue(self.queue_url)
                started = time.perf_counter()
                self._queue.produce(batch)
            except Exception as exc:  # the thread must survive any backend failure
                QUEUE_PRODUCE_FAILURES.inc()
                log.warning("queue produce failed (retrying in %.2fs): %s", delay, exc)
                self._reset_queue()
            else:
                QUEUE_PRODUCE_LATENCY.observe(time.perf_counter() - started)
                QUEUE_PRODUCED.inc(len(batch))
                break
            if self._backoff(delay):
                QUEUE_DROPS.labels(reason="shutdown").inc(len(batch))
                break
            QUEUE_PRODUCE_RETRIES.inc()
            delay = min(delay * 2, max_delay)
        self._settle()

    def _redact(self, batch: list[PairRecord]) -> list[PairRecord]:
        if self._redactor is None:
            return batch
        redacted = []
        for record in batch:
            try:
                redacted.append(self._redactor(record))
            except Exception:
                log.exception("redactor failed on pair %s; dropped", record.id)
                QUEUE_DROPS.labels(reason="redaction_failed").inc()
        return redacted

    def _backoff(self, delay: float) -> bool:
        """Sleep ``delay`` (cut short by close); True when the close deadline has passed."""
        with self._cond:
            if self._deadline is not None:
                delay = min(delay, max(0.0, self._deadline - time.monotonic()))
            self._cond.wait(delay)
            return self._past_deadline()

    def _reset_queue(self) -> None:
        """Drop a failed connection; the next attempt opens the queue afresh."""
        if self._queue is not None:
            try:
                self._queue.close()
            except Exception:
                log.debug("closing a failed queue connection raised", exc_info=True)
            self._queue = None

    def _settle(self) -> None:
        with self._cond:
            self._settled += self._in_flight
            self._in_flight = 0
            QUEUE_BUFFERED.set(len(self._buffer))
            self._cond.notify_all()

    def _drop_buffer(self) -> None:
        with self._cond:
            self._drop_buffer_locked()

    def _drop_buffer_locked(self) -> None:
        QUEUE_DROPS.labels(reason="shutdown").inc(len(self._buffer))
        self._settled += len(self._buffer)
        self._buffer.clear()
        QUEUE_BUFFERED.set(self._in_flight)
        self._cond.notify_all()

    def _observe(self) -> None:
        """Refresh the depth and lag gauges (best effort, at most once per interval)."""
        now = time.monotonic()
        if self._queue is None or now - self._observed_at < self._stats_interval_s:
            return
        self._observed_at = now
        try:
            stats = self._queue.stats()
        except Exception as exc:
            log.debug("queue stats failed: %s", exc)
            return
        QUEUE_DEPTH.set(stats.depth)
        QUEUE_LAG.set(stats.oldest_age_s or 0.0)
