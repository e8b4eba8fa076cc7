"""The durable flagged-pair queue: the contract between the server and the trainer.

``open_queue(url)`` picks the backend by URL scheme:

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``: one SQLite file;
- ``redis://host:port/db[?stream=NAME]`` (or ``rediss://``): Redis Streams, keys
  prefixed with ``NAME`` (default ``conscience:pairs``).
"""

from __future__ import annotations

from app.queue.base import (
    Leased,
    PairFilter,
    PairQueue,
    PairReview,
    QueueError,
    QueueStats,
    ReviewState,
)

__all__ = [
    "Leased",
    "PairFilter",
    "PairQueue",
    "PairReview",
    "QueueError",
    "QueueStats",
    "ReviewState",
    "open_queue",
]

_SQLITE_PREFIX = "sqlite:///"


def open_queue(url: str) -> PairQueue:
    """Open (creating if needed) the queue at ``url``; raises ``QueueError`` on failure."""
    if url.startswith(_SQLITE_PREFIX) and len(url) > len(_SQLITE_PREFIX):
        from app.queue.sqlite import SqliteQueue

        return SqliteQueue(url[len(_SQLITE_PREFIX) :], url=url)
    if url.startswith(("redis://", "rediss://")):
        from app.queue.redis_streams import RedisStreamsQueue

        return RedisStreamsQueue(url)
    raise QueueError(
        f"unsupported queue URL {url!r}: use sqlite:///PATH or redis://HOST:PORT/DB[?stream=NAME]"
    )
