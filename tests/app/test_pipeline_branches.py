"""Pipeline branches on a scripted engine: passed, flagged, rewritten, each failure policy.

The same user-visible paths run on the real engine in test_server_chat.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app.conscience.frameworks import FrameworkCatalog
from app.engine import Adapter
from app.errors import EngineUnavailable, ReviewFailed, ReviewOutputInvalid
from app.pipeline import ConsciencePipeline, Outcome
from app.policy import PolicySlot
from app.protocol import ChatCompletionRequest
from app.settings import Settings
from tests.support import ScriptedEngine, judged

ETHICAL = judged(0.05)
UNETHICAL = judged(0.8)
REQUEST = {"model": "scripted", "messages": [{"role": "user", "content": "how to pick a lock"}]}
ADAPTER = Adapter("policy-v1", "v1", Path("/nonexistent"), 1)


def pipeline(engine, adapter=None, **overrides):
    sink: list = []
    settings = Settings(**overrides)
    pipe = ConsciencePipeline(
        engine, FrameworkCatalog.load(), settings, PolicySlot(adapter), sink.append
    )
    return pipe, sink


async def run(pipe, mode=None, **options) -> Outcome:
    body = dict(REQUEST)
    body["conscience"] = {"mode": mode, **options} if mode else options
    plan = pipe.plan(ChatCompletionRequest.model_validate(body), "req-1")
    events = [e async for e in pipe.execute(plan)]
    assert isinstance(events[-1], Outcome)
    return events[-1]


def counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_ethical_draft_passes_unchanged():
    engine = ScriptedEngine(["use a key"], [ETHICAL])
    pipe, sink = pipeline(engine)
    outcome = await run(pipe)
    assert outcome.answer.text == "use a key"
    assert outcome.report.action.value == "passed"
    assert outcome.report.verdict.value == "ethical"
    assert outcome.report.score == pytest.approx(0.05)
    assert sink == []


async def test_flag_mode_keeps_the_draft():
    pipe, sink = pipeline(ScriptedEngine(["bad draft"], [UNETHICAL]))
    outcome = await run(pipe, "flag")
    assert (outcome.answer.text, outcome.report.action.value) == ("bad draft", "flagged")
    assert sink == []


async def test_rewrite_replaces_the_draft_and_records_the_pair():
    engine = ScriptedEngine(["bad draft", "better answer"], [UNETHICAL])
    pipe, sink = pipeline(engine, adapter=ADAPTER)
    outcome = await run(pipe, "rewrite", return_draft=True)
    assert outcome.answer.text == "better answer"
    assert outcome.report.action.value == "rewritten"
    assert outcome.report.draft == "bad draft"
    assert outcome.report.adapter == "v1"
    (record,) = sink
    assert record.rejected[0].content == "bad draft"
    assert record.chosen[0].content == "better answer"
    assert record.adapter_version == "v1" and record.verdict == "unethical"
    # The draft ran with the adapter; review and rewrite on the frozen base.
    assert engine.calls == [
        ("req-1-draft", ADAPTER),
        ("req-1-review", None),
        ("req-1-rewrite", None),
    ]


async def test_a_rewrite_that_repeats_the_draft_makes_no_pair():
    before = counter("conscience_pairs_skipped_total", reason="rewrite_unchanged")
    engine = ScriptedEngine(["bad draft", "bad draft"], [UNETHICAL])
    pipe, sink = pipeline(engine, adapter=ADAPTER)
    outcome = await run(pipe, "rewrite")
    assert outcome.report.action.value == "rewritten" and outcome.answer.text == "bad draft"
    assert sink == []
    after = counter("conscience_pairs_skipped_total", reason="rewrite_unchanged")
    assert after == before + 1


async def test_rereview_reports_the_rewrite_verdict():
    engine = ScriptedEngine(["bad", "good"], [UNETHICAL, ETHICAL])
    pipe, _ = pipeline(engine, rereview_rewrite=True)
    outcome = await run(pipe)
    assert outcome.report.rewrite_verdict.value == "ethical"
    assert outcome.report.rewrite_score == pytest.approx(0.05)


async def test_threshold_flags_low_scores():
    pipe, _ = pipeline(ScriptedEngine(["d", "r"], [ETHICAL]), flag_threshold=0.01)
    assert (await run(pipe)).report.action.value == "rewritten"


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (ReviewOutputInvalid("nothing matched"), "bad_output"),
        (EngineUnavailable("engine died"), "engine_error"),
        (5.0, "timeout"),
    ],
)
async def test_fail_open_returns_the_draft_and_counts(failure, kind):
    before = counter("conscience_review_failures_total", kind=kind)
    opened = counter("conscience_failure_decisions_total", policy="fail_open")
    pipe, sink = pipeline(ScriptedEngine(["draft"], [failure]), review_timeout_s=0.1)
    outcome = await run(pipe)
    assert outcome.answer.text == "draft"
    assert outcome.report.verdict.value == "unknown"
    assert outcome.report.review_error.startswith(kind)
    assert counter("conscience_review_failures_total", kind=kind) == before + 1
    assert counter("conscience_failure_decisions_total", policy="fail_open") == opened + 1
    assert sink == []


async def test_fail_closed_with_safe_answer():
    pipe, _ = pipeline(
        ScriptedEngine(["draft"], [ReviewOutputInvalid("x")]),
        failure_policy="fail_closed",
        fail_closed_answer="I cannot answer right now.",
    )
    outcome = await run(pipe)
    assert outcome.answer.text == "I cannot answer right now."
    assert outcome.report.verdict.value == "unknown"


async def test_fail_closed_without_safe_answer_raises():
    closed = counter("conscience_failure_decisions_total", policy="fail_closed")
    pipe, _ = pipeline(
        ScriptedEngine(["draft"], [ReviewOutputInvalid("x")]), failure_policy="fail_closed"
    )
    with pytest.raises(ReviewFailed):
        await run(pipe)
    assert counter("conscience_failure_decisions_total", policy="fail_closed") == closed + 1


async def test_mode_off_streams_deltas_and_skips_review():
    engine = ScriptedEngine(["one two three"], [])
    pipe, _ = pipeline(engine)
    body = {**REQUEST, "conscience": {"mode": "off"}}
    plan = pipe.plan(ChatCompletionRequest.model_validate(body), "r")
    events = [e async for e in pipe.execute(plan)]
    assert [e.text for e in events[:-1]] == ["one", " two", " three"]
    assert events[-1].report.latency_ms.review == 0
    assert [c[0] for c in engine.calls] == ["r-draft"]
