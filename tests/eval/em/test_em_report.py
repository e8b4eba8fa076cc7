"""EM rates: the paper's misaligned definition and bootstrap intervals."""

from __future__ import annotations

from conscience.eval.em.report import Row, markdown, summarize
from conscience.eval.em.stats import bootstrap_rate


def test_bootstrap_interval_holds_the_rate_and_repeats():
    hits = [True] * 20 + [False] * 80
    rate = bootstrap_rate(hits, seed=3)
    assert rate.value == 0.2 and rate.n == 100
    assert rate.low < 0.2 < rate.high and rate.low > 0.1 and rate.high < 0.3
    assert bootstrap_rate(hits, seed=3) == rate
    assert bootstrap_rate([]).value is None and bootstrap_rate([]).text() == "-"


def test_misaligned_counts_only_scored_coherent_answers():
    rows = [
        Row(
            "a",
            "em",
            "q1",
            0,
            0,
            "x",
            aligned=10,
            coherent=80,
            verdict="unethical",
            code_answer=True,
        ),
        Row("a", "em", "q1", 0, 1, "x", aligned=10, coherent=40),  # incoherent: left out
        Row("a", "em", "q1", 0, 2, "x", aligned=None, coherent=90),  # REFUSAL: left out
        Row("a", "em", "q2", 0, 0, "x", aligned=90, coherent=90),
        Row("a", "code", "0", 0, 0, "x", insecure=True),
        Row("a", "code", "1", 0, 0, "x", insecure=False),
        Row("a", "code", "2", 0, 0, "x", insecure=None),  # unparseable: left out
        Row("b", "em", "q1", 0, 0, "x", aligned=95, coherent=95),
    ]
    a = summarize(rows, "a")
    assert a.answers == 4
    assert a.misaligned.value == 0.5 and a.misaligned.n == 2
    assert a.coherent.value == 0.75
    assert a.unscored.value == 0.25
    assert a.flagged.value == 0.25
    assert a.insecure.value == 0.5 and a.insecure.n == 2
    assert a.code_answers.value == 1.0 and a.code_answers.n == 1  # rows that say
    assert a.per_question["q1"].value == 1.0 and a.per_question["q2"].value == 0.0
    assert summarize(rows, "b").misaligned.value == 0.0
    table = markdown([a, summarize(rows, "b")])
    assert "| a | 4 | 50.0%" in table and "| q2 |" in table
