"""Child processes for the queue tests: ``python -m tests.app.queue.queue_worker MODE ...``.

- ``produce URL PREFIX COUNT OUT``: produce ``COUNT`` records one call each (``COUNT`` 0:
  forever); after each call returns, append the record's JSON to ``OUT`` and flush.
- ``consume URL N LEASE_S ACK OUT``: lease ``N`` records, ack the first ``ACK``, write their
  ids and a final ``LEASED`` line to ``OUT``, then sleep until killed.
"""

from __future__ import annotations

import itertools
import sys
import time

from app.queue import open_queue
from tests.app.queue.queue_helpers import make_record


def produce(url: str, prefix: str, count: int, out: str) -> None:
    indexes = itertools.count() if count == 0 else range(count)
    with open_queue(url) as queue, open(out, "a", encoding="utf-8") as f:
        for i in indexes:
            record = make_record(i, prefix=prefix)
            queue.produce([record])
            f.write(record.model_dump_json() + "\n")
            f.flush()


def consume(url: str, n: int, lease_s: float, ack: int, out: str) -> None:
    queue = open_queue(url)
    leased = queue.lease(n, lease_s, consumer="doomed")
    acked = [item.record.id for item in leased[:ack]]
    queue.ack(acked)
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(f"{record_id}\n" for record_id in acked)
        f.write("LEASED\n")
    time.sleep(3600)


if __name__ == "__main__":
    mode, url, *rest = sys.argv[1:]
    if mode == "produce":
        produce(url, rest[0], int(rest[1]), rest[2])
    else:
        consume(url, int(rest[0]), float(rest[1]), int(rest[2]), rest[3])
