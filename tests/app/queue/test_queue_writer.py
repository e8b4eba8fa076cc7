"""QueueWriter: the server's non-blocking producer, on real backends."""

from __future__ import annotations

from pathlib import Path

from app.queue import open_queue
from app.queue.redact import EMAIL_MASK, PHONE_MASK, redact_pii, redact_text
from app.queue.writer import QueueWriter
from app.records import Message
from tests.app.queue.queue_helpers import PrivateRedis, make_record, sample

FAST = {"backoff_s": (0.02, 0.1)}


def test_close_drains_everything_submitted(queue_url: str) -> None:
    produced = sample("conscience_queue_produced_total")
    writer = QueueWriter(queue_url, batch_size=8)
    writer.start()
    assert all(writer.submit(make_record(i)) for i in range(50))
    writer.close()
    assert sample("conscience_queue_produced_total") == produced + 50
    assert sample("conscience_queue_buffered") == 0
    with open_queue(queue_url) as q:
        assert [r.id for r in q.records()] == [f"r-{i}" for i in range(50)]
    assert not writer.submit(make_record(99))


def test_full_buffer_and_shutdown_drops_are_counted(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    full = sample("conscience_queue_drops_total", reason="buffer_full")
    shutdown = sample("conscience_queue_drops_total", reason="shutdown")
    writer = QueueWriter(f"sqlite:///{blocker / 'pairs.db'}", capacity=5, **FAST)
    writer.start()
    accepted = [writer.submit(make_record(i)) for i in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert sample("conscience_queue_drops_total", reason="buffer_full") == full + 3
    assert not writer.flush(timeout=0.3)
    writer.close(timeout=0.2)
    assert sample("conscience_queue_drops_total", reason="shutdown") == shutdown + 5
    assert sample("conscience_queue_buffered") == 0


def test_retries_until_the_sqlite_path_becomes_usable(tmp_path: Path) -> None:
    blocker = tmp_path / "queue"
    blocker.write_text("")
    failures = sample("conscience_queue_produce_failures_total")
    retries = sample("conscience_queue_produce_retries_total")
    writer = QueueWriter(f"sqlite:///{blocker / 'pairs.db'}", **FAST)
    writer.start()
    writer.submit(make_record(0))
    assert not writer.flush(timeout=0.3)
    blocker.unlink()
    blocker.mkdir()
    assert writer.flush(timeout=10)
    writer.close()
    assert sample("conscience_queue_produce_failures_total") > failures
    assert sample("conscience_queue_produce_retries_total") > retries
    with open_queue(f"sqlite:///{blocker / 'pairs.db'}") as q:
        assert [r.id for r in q.records()] == ["r-0"]


def test_retries_until_redis_comes_up(private_redis: PrivateRedis) -> None:
    writer = QueueWriter(private_redis.url, **FAST)
    writer.start()
    assert all(writer.submit(make_record(i)) for i in range(3))
    assert not writer.flush(timeout=0.3)
    private_redis.start()
    assert writer.flush(timeout=20)
    writer.close()
    with open_queue(private_redis.url) as q:
        assert [r.id for r in q.records()] == ["r-0", "r-1", "r-2"]


def test_redactor_masks_contact_details_before_produce(queue_url: str) -> None:
    record = make_record(0, prompt="mail jane.doe@example.org or call +1 (555) 123-4567")
    record.rejected = [Message(role="assistant", content="ring 555-987-6543 on 2024-01-15")]
    writer = QueueWriter(queue_url, redactor=redact_pii)
    writer.start()
    writer.submit(record)
    writer.close()
    with open_queue(queue_url) as q:
        (stored,) = q.records()
    assert stored.prompt[0].content == f"mail {EMAIL_MASK} or call {PHONE_MASK}"
    assert stored.rejected[0].content == f"ring {PHONE_MASK} on 2024-01-15"
    assert stored.chosen == record.chosen


def test_redact_text_leaves_ordinary_numbers() -> None:
    text = "In 1969, 3 astronauts flew 384400 km; see 10.1000/182 or v1.2.3."
    assert redact_text(text) == text
    assert redact_text("+44 20 7946 0958, a@b.co") == f"{PHONE_MASK}, {EMAIL_MASK}"


def test_a_failing_redactor_drops_only_that_pair(tmp_path: Path) -> None:
    def redactor(record):
        if record.id == "r-1":
            raise ValueError("boom")
        return record

    dropped = sample("conscience_queue_drops_total", reason="redaction_failed")
    url = f"sqlite:///{tmp_path / 'pairs.db'}"
    writer = QueueWriter(url, redactor=redactor)
    writer.start()
    for i in range(3):
        writer.submit(make_record(i))
    writer.close()
    assert sample("conscience_queue_drops_total", reason="redaction_failed") == dropped + 1
    with open_queue(url) as q:
        assert [r.id for r in q.records()] == ["r-0", "r-2"]
