"""The PairQueue contract, run against both backends (SQLite file, real Redis Streams)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from app.queue import PairFilter, QueueError, open_queue
from app.records import PairRecord
from tests.app.queue.queue_helpers import make_record, sample


def test_lease_in_produce_order_then_ack(queue_url: str) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(6)])
        first = q.lease(4, 30, consumer="a")
        assert [x.record.id for x in first] == [f"r-{i}" for i in range(4)]
        assert all(x.deliveries == 1 for x in first)
        assert first[0].record == make_record(0).model_copy(
            update={"created_at": first[0].record.created_at}
        )
        second = q.lease(4, 30, consumer="b")
        assert [x.record.id for x in second] == ["r-4", "r-5"]
        q.ack([x.record.id for x in first])
        stats = q.stats()
        assert (stats.depth, stats.leased, stats.acked) == (0, 2, 4)
        assert stats.by_framework == {"three_laws": 2}
        assert stats.oldest_age_s is not None and stats.oldest_age_s >= 0
        assert q.lease(4, 30, consumer="c") == []


def test_expired_lease_is_redelivered_with_its_count(queue_url: str) -> None:
    before = sample("conscience_queue_redeliveries_total")
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(3)])
        q.lease(2, 0.5, consumer="a")
        assert q.stats().leased == 2
        time.sleep(0.6)
        assert q.stats().depth == 3
        again = q.lease(3, 30, consumer="b")
        assert [(x.record.id, x.deliveries) for x in again] == [("r-0", 2), ("r-1", 2), ("r-2", 1)]
    assert sample("conscience_queue_redeliveries_total") == before + 2


def test_a_live_lease_is_not_handed_out_twice(queue_url: str) -> None:
    with open_queue(queue_url) as q, open_queue(queue_url) as other:
        q.produce([make_record(i) for i in range(10)])
        a = {x.record.id for x in q.lease(6, 30, consumer="a")}
        b = {x.record.id for x in other.lease(6, 30, consumer="b")}
        assert len(a) == 6 and len(b) == 4 and not a & b


def test_produce_is_idempotent_by_id(queue_url: str) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(0), make_record(1)])
        q.produce([make_record(1), make_record(2), make_record(2)])
        assert [r.id for r in q.records()] == ["r-0", "r-1", "r-2"]
        q.produce([])
        assert q.stats().depth == 3


def test_ack_ignores_unknown_repeated_and_unleased_ids(queue_url: str) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(3)])
        leased = q.lease(1, 30, consumer="a")
        q.ack([leased[0].record.id, "nope", "r-2"])
        q.ack([leased[0].record.id])
        stats = q.stats()
        assert (stats.depth, stats.leased, stats.acked) == (2, 0, 1)


def test_filters_skip_records_without_losing_them(queue_url: str) -> None:
    records = [
        make_record(0, framework="wwjd"),
        make_record(1, score=0.2),
        make_record(2, verdict="neutral"),
        make_record(3, score=None),
        make_record(4),
    ]
    want = PairFilter(frameworks=["three_laws"], verdicts=["unethical"], min_score=0.5)
    assert [want.accepts(r) for r in records] == [False, False, False, False, True]
    with open_queue(queue_url) as q:
        q.produce(records)
        assert [x.record.id for x in q.lease(5, 30, consumer="picky", filters=want)] == ["r-4"]
        assert q.lease(5, 30, consumer="picky", filters=want) == []
        rest = q.lease(5, 30, consumer="any")
        assert sorted((x.record.id, x.deliveries) for x in rest) == [
            ("r-0", 1),
            ("r-1", 1),
            ("r-2", 1),
            ("r-3", 1),
        ]


def test_max_per_prompt_caps_one_lease_call(queue_url: str) -> None:
    records = [make_record(i, prompt="same question") for i in range(4)] + [make_record(9)]
    with open_queue(queue_url) as q:
        q.produce(records)
        capped = PairFilter(max_per_prompt=2)
        first = q.lease(10, 30, consumer="a", filters=capped)
        assert [x.record.id for x in first] == ["r-0", "r-1", "r-9"]
        second = q.lease(10, 30, consumer="a", filters=capped)
        assert [x.record.id for x in second] == ["r-2", "r-3"]


def test_peek_shows_ready_records_without_leasing(queue_url: str) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(5)])
        q.lease(2, 30, consumer="a")
        assert [r.id for r in q.peek(2)] == ["r-2", "r-3"]
        assert [r.id for r in q.peek(10)] == ["r-2", "r-3", "r-4"]
        assert q.stats().depth == 3


def test_requeue_releases_live_leases(queue_url: str) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(4)])
        q.lease(3, 3600, consumer="a")
        assert q.requeue() == 3
        assert q.requeue() == 0
        assert q.stats().depth == 4
        again = q.lease(4, 30, consumer="b")
        assert [(x.record.id, x.deliveries) for x in again] == [
            ("r-0", 2),
            ("r-1", 2),
            ("r-2", 2),
            ("r-3", 1),
        ]


def test_prune_removes_only_acked_records(queue_url: str) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(6)])
        leased = q.lease(4, 30, consumer="a")
        for item in leased:
            q.ack([item.record.id])
            time.sleep(0.002)
        assert q.prune(max_acked=1) == 3
        assert [r.id for r in q.records(include_acked=True)] == ["r-3", "r-4", "r-5"]
        time.sleep(0.05)
        assert q.prune(max_age_s=0.01) == 1
        assert q.prune(max_acked=0, max_age_s=0) == 0
        stats = q.stats()
        assert (stats.depth, stats.acked) == (2, 0)


def test_export_writes_trl_preference_jsonl(queue_url: str, tmp_path: Path) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(3)])
        q.ack([x.record.id for x in q.lease(1, 30, consumer="a")])
        assert q.export(tmp_path / "unacked.jsonl") == 2
        assert q.export(tmp_path / "all.jsonl", include_acked=True) == 3
    lines = (tmp_path / "unacked.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["id"] for row in rows] == ["r-1", "r-2"]
    for row in rows:
        for column in ("prompt", "chosen", "rejected"):
            assert all(set(m) == {"role", "content"} for m in row[column])
        assert row["chosen"][0]["role"] == "assistant"
        assert {"framework", "verdict", "score", "created_at"} <= set(row)
        PairRecord.model_validate(row)
    assert len((tmp_path / "all.jsonl").read_text().splitlines()) == 3


def test_import_round_trips_and_marks_source(queue_url: str, tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(make_record(i).model_dump_json() + "\n\n" for i in range(3)))
    with open_queue(queue_url) as q:
        q.produce([make_record(0)])
        assert q.import_records(path) == 3
        records = list(q.records())
        assert [r.id for r in records] == ["r-0", "r-1", "r-2"]
        assert [r.source for r in records] == ["server", "import", "import"]


def test_import_rejects_a_malformed_line_and_imports_nothing(
    queue_url: str, tmp_path: Path
) -> None:
    good = [make_record(i).model_dump_json() for i in range(4)]
    bad = json.loads(good[2])
    bad["chosen"] = []
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join([good[0], good[1], json.dumps(bad), good[3]]) + "\n")
    with open_queue(queue_url) as q:
        with pytest.raises(QueueError, match=r"line 3: invalid record \(chosen"):
            q.import_records(path)
        path.write_text(good[0] + "\n{not json\n")
        with pytest.raises(QueueError, match="line 2"):
            q.import_records(path)
        with pytest.raises(QueueError, match="cannot read"):
            q.import_records(tmp_path / "missing.jsonl")
        assert q.stats().depth == 0


def test_concurrent_producer_processes(queue_url: str, tmp_path: Path, spawn) -> None:
    children = [
        spawn("produce", queue_url, f"p{k}", "40", str(tmp_path / f"p{k}.out")) for k in range(3)
    ]
    assert [child.wait(timeout=60) for child in children] == [0, 0, 0]
    with open_queue(queue_url) as q:
        ids = [x.record.id for x in q.lease(1000, 30, consumer="a")]
    assert Counter(i.split("-")[0] for i in ids) == {"p0": 40, "p1": 40, "p2": 40}
    for k in range(3):
        assert [i for i in ids if i.startswith(f"p{k}-")] == [f"p{k}-{i}" for i in range(40)]


def test_unknown_scheme_and_unreachable_backend_raise_queue_error(tmp_path: Path) -> None:
    with pytest.raises(QueueError, match="unsupported queue URL 'postgres://x'"):
        open_queue("postgres://x")
    with pytest.raises(QueueError, match="unsupported"):
        open_queue("sqlite:///")
    with pytest.raises(QueueError, match="Connection refused"):
        open_queue("redis://127.0.0.1:1/0?stream=nowhere")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(QueueError, match=re.escape(str(blocker))):
        open_queue(f"sqlite:///{blocker / 'pairs.db'}")
