"""A restarted consumer takes back its own live leases at once; others' leases stay put.

Both backends, real SQLite file and real Redis (``requeue(consumer)``).
"""

from __future__ import annotations

import time

from app.queue import open_queue
from tests.app.queue.queue_helpers import make_record


def test_requeue_by_consumer_releases_only_its_live_leases(queue_url: str) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(8)])
        mine = [x.record.id for x in q.lease(4, 1800, consumer="trainer")]
        theirs = [x.record.id for x in q.lease(3, 1800, consumer="other")]
        assert (q.stats().depth, q.stats().leased) == (1, 7)

        assert q.requeue("nobody") == 0
        assert q.requeue("trainer") == 4
        stats = q.stats()
        assert (stats.depth, stats.leased, stats.acked) == (5, 3, 0)
        assert q.requeue("trainer") == 0  # nothing live left under that name

        again = q.lease(8, 1800, consumer="trainer")
        got = {x.record.id: x.deliveries for x in again}
        assert set(got) == {*mine, "r-7"}  # the other consumer's leases are not handed out
        assert all(got[rid] == 2 for rid in mine) and got["r-7"] == 1  # counts kept
        assert not set(got) & set(theirs)


def test_requeue_by_consumer_leaves_expired_and_acked_records_alone(queue_url: str) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(4)])
        short = q.lease(2, 0.3, consumer="trainer")
        long = q.lease(2, 1800, consumer="trainer")
        q.ack([long[0].record.id])
        time.sleep(0.4)  # the short leases have expired: already ready, not "released"
        assert q.requeue("trainer") == 1
        stats = q.stats()
        assert (stats.depth, stats.leased, stats.acked) == (3, 0, 1)
        ids = {x.record.id for x in q.lease(4, 1800, consumer="b")}
        assert ids == {short[0].record.id, short[1].record.id, long[1].record.id}


def test_requeue_without_consumer_still_releases_everyone(queue_url: str) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(5)])
        q.lease(2, 1800, consumer="a")
        q.lease(2, 1800, consumer="b")
        assert q.requeue() == 4
        assert (q.stats().depth, q.stats().leased) == (5, 0)


def test_redis_requeue_pages_through_a_long_pending_list(redis_queue_url: str) -> None:
    with open_queue(redis_queue_url) as q:
        q.produce([make_record(i) for i in range(1200)])
        for _ in range(6):  # interleaved in the pending list
            q.lease(100, 1800, consumer="other")
            q.lease(100, 1800, consumer="trainer")
        assert q.requeue("trainer") == 600
        assert (q.stats().depth, q.stats().leased) == (600, 600)
