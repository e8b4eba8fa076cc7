"""Pair approval on both queue backends, and the trainer's --require-approval lease filter."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from app.queue import PairFilter, open_queue
from app.records import Message, PairRecord
from tests.app.queue.queue_helpers import REDIS_URL, delete_stream_keys


def pair(i: int) -> PairRecord:
    return PairRecord(
        prompt=[Message(role="user", content=f"question {i}")],
        chosen=[Message(role="assistant", content=f"rewrite {i}")],
        rejected=[Message(role="assistant", content=f"draft {i}")],
        framework="introspective",
        framework_version="1",
        review_prompt_hash="0" * 64,
        verdict="unethical",
        score=0.8,
    )


@pytest.fixture(params=["sqlite", "redis"])
def url(request, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pairs.db'}"
        return
    stream = f"test:{uuid.uuid4().hex}"
    yield f"{REDIS_URL}?stream={stream}"
    delete_stream_keys(stream)


APPROVED = PairFilter(approved_only=True)


def test_approved_only_leases_reviewed_pairs_with_their_edits(url):
    records = [pair(i) for i in range(5)]
    with open_queue(url) as queue:
        queue.produce(records)
        ids = [r.id for r in records]
        assert {s.state for s in queue.reviews(ids).values()} == {"pending"}
        assert queue.lease(5, 60, consumer="t", filters=APPROVED) == []
        assert queue.review(ids[0], "approved")
        assert queue.review(ids[1], "approved", chosen="an edited rewrite")
        assert queue.review(ids[2], "rejected")
        assert not queue.review("no-such-id", "approved")
        reviews = queue.reviews([*ids, "no-such-id"])
        assert [reviews[i].state for i in ids] == [
            "approved", "approved", "rejected", "pending", "pending",
        ]  # fmt: skip
        assert reviews[ids[1]].edited and not reviews[ids[0]].edited
        assert "no-such-id" not in reviews
        leased = queue.lease(5, 60, consumer="t", filters=APPROVED)
        assert sorted(x.record.id for x in leased) == sorted(ids[:2])
        chosen = {x.record.id: x.record.chosen[-1].content for x in leased}
        assert chosen[ids[1]] == "an edited rewrite" and chosen[ids[0]] == "rewrite 0"
        queue.ack(ids[:2])
        # A plain consumer still gets the pending ones, never the rejected one.
        rest = queue.lease(5, 60, consumer="u")
        assert sorted(x.record.id for x in rest) == sorted(ids[3:])
        assert queue.stats().acked == 3  # two trained + one rejected (retired)
        exported = {r.id: r for r in queue.records(include_acked=True)}
        assert exported[ids[1]].chosen[-1].content == "an edited rewrite"


def test_trainer_require_approval_leases_only_approved(url, tmp_path):
    from app.adapter_registry import AdapterRegistry
    from trainer.config import load_config
    from trainer.loop import PairSource

    records = [pair(i) for i in range(6)]
    with open_queue(url) as queue:
        queue.produce(records)
        for record in records[:3]:
            queue.review(record.id, "approved")
        config = load_config(
            queue=url, adapters=tmp_path / "a", require_approval=True, min_pairs=1, round_size=8
        )
        source = PairSource(queue, AdapterRegistry(tmp_path / "a"), config)
        got = source.next_round()
        assert sorted(r.id for r in got) == sorted(r.id for r in records[:3])
