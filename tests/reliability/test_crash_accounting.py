"""Invariant 4 of the crash trials: which missing pairs a server SIGKILL explains.

A pair the server acknowledged and the queue lacks is explained only by a server kill after
its request was sent, and only up to what that server's buffer held just before the kill
(``conscience_queue_buffered``) plus answers between that reading and the kill. The earlier
rule (any answer within 2 s before a kill's timestamp) both hid losses and, with a timestamp
taken after a slow reap, blamed the product for pairs a kill had really taken.
"""

from __future__ import annotations

import pytest

from benchmarks.crash_checks import Answer, ServerKill, acknowledged_problems
from benchmarks.crash_trials import LiveLoop
from tests.app.queue.queue_helpers import free_port, make_record


@pytest.fixture
def loop(tmp_path):
    live = LiveLoop(tmp_path / "model", tmp_path, "", free_port())
    live.start_redis()
    yield live
    live.kill_redis()


def queue_tagged(loop: LiveLoop, *tags: str) -> None:
    from app.queue import open_queue

    with open_queue(loop.queue_url) as q:
        q.produce([make_record(i, prompt=f"[{tag}] bread?") for i, tag in enumerate(tags)])


def answer(tag: str, at: float) -> Answer:
    return Answer(tag, at - 0.05, at, 200, "rewritten")


def test_queued_pairs_and_losses_a_full_buffer_explains_pass(loop):
    queue_tagged(loop, "kept")
    loop.answers = [answer("kept", 100.0), answer("lost", 109.0), Answer("x", 1, 2, 200, "passed")]
    loop.server_kills = [ServerKill(read_at=109.5, killed_at=109.6, buffered=1)]
    assert acknowledged_problems(loop) == []
    assert loop.lost_at_kill["pairs"] == 1 and loop.lost_at_kill["oldest_s"] == pytest.approx(0.6)


def test_an_answer_between_the_reading_and_the_kill_is_allowed(loop):
    loop.answers = [answer("late", 109.55)]
    loop.server_kills = [ServerKill(read_at=109.5, killed_at=109.6, buffered=0)]
    assert acknowledged_problems(loop) == []


def test_more_losses_than_the_buffer_held_fail(loop):
    loop.answers = [answer("a", 100.0), answer("b", 105.0)]
    loop.server_kills = [ServerKill(read_at=109.5, killed_at=109.6, buffered=1)]
    problems = acknowledged_problems(loop)
    assert len(problems) == 1 and "lost 2 acknowledged pairs" in problems[0]


def test_a_loss_with_an_unreadable_buffer_fails(loop):
    loop.answers = [answer("a", 109.0)]
    loop.server_kills = [ServerKill(read_at=109.5, killed_at=109.6, buffered=None)]
    assert len(acknowledged_problems(loop)) == 1


def test_a_loss_no_server_kill_follows_fails(loop):
    loop.answers = [answer("after", 120.0)]
    loop.server_kills = [ServerKill(read_at=109.5, killed_at=109.6, buffered=5)]
    problems = acknowledged_problems(loop)
    assert len(problems) == 1 and "[after] not in the queue" in problems[0]
