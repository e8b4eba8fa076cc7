"""Metrics against hand-computed values, degenerate cases included."""

from __future__ import annotations

import numpy as np
import pytest

from conscience.eval import metrics
from conscience.eval.report import build_report
from conscience.eval.runner import ItemResult, RunConfig


def test_confusion_rates_match_hand_counts():
    c = metrics.confusion([1, 1, 0, 0, 1], [1, 0, 1, 0, 1])
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 1, 1, 1)
    assert c.precision == pytest.approx(2 / 3)
    assert c.recall == pytest.approx(2 / 3)
    assert c.f1 == pytest.approx(2 / 3)
    assert c.fpr == pytest.approx(1 / 2)


def test_no_positives_leaves_recall_undefined():
    c = metrics.confusion([0, 1], [0, 0])
    assert c.recall is None
    assert c.precision == 0.0 and c.f1 == 0.0 and c.fpr == 0.5
    quiet = metrics.confusion([0, 0], [0, 0])
    assert quiet.precision is None and quiet.f1 is None and quiet.fpr == 0.0


def test_no_flags_with_positives_gives_zero_f1_and_undefined_precision():
    c = metrics.confusion([0, 0, 0], [1, 0, 1])
    assert c.precision is None and c.recall == 0.0 and c.f1 == 0.0


def test_no_negatives_leaves_fpr_undefined():
    assert metrics.confusion([1, 0], [1, 1]).fpr is None


def test_auroc_hand_values_and_ties():
    assert metrics.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # pairs (pos, neg): (.5,.2)=1, (.5,.5)=.5, (.9,.2)=1, (.9,.5)=1 -> 3.5 / 4
    assert metrics.auroc([0.2, 0.5, 0.5, 0.9], [0, 1, 0, 1]) == pytest.approx(0.875)
    assert metrics.auroc([0.5] * 4, [1, 0, 1, 0]) == pytest.approx(0.5)
    assert metrics.auroc([0.9, 0.1], [0, 1]) == pytest.approx(0.0)


def test_auroc_with_one_class_is_undefined():
    assert metrics.auroc([0.1, 0.9], [1, 1]) is None
    assert metrics.auroc([0.1, 0.9], [0, 0]) is None
    assert metrics.auroc([], []) is None


def test_reliability_bins_and_ece():
    scores, positives = [0.05, 0.15, 0.95, 0.95], [0, 1, 1, 0]
    bins = metrics.reliability(scores, positives)
    assert len(bins) == 10 and sum(b.count for b in bins) == 4
    assert bins[0].mean_score == pytest.approx(0.05) and bins[0].positive_rate == 0.0
    assert bins[9].count == 2 and bins[9].positive_rate == 0.5
    assert bins[5].mean_score is None and bins[5].positive_rate is None
    # 1/4 * .05 + 1/4 * .85 + 2/4 * .45
    assert metrics.ece(scores, positives) == pytest.approx(0.45)


def test_score_of_one_falls_in_the_last_bin_and_perfect_calibration_is_zero():
    assert metrics.reliability([1.0], [1])[-1].count == 1
    assert metrics.ece([0.0, 0.0, 1.0], [0, 0, 1]) == pytest.approx(0.0)
    assert metrics.ece([], []) is None


def test_threshold_maximising_f1_and_under_an_fpr_cap():
    scores, positives = [0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]
    # t=.4: F1 2/3; t=.3: 1/2; t=.2: 4/5; t=.1: 2/3
    assert metrics.threshold_for(scores, positives) == pytest.approx(0.2)
    assert metrics.threshold_for(scores, positives, max_fpr=0.0) == pytest.approx(0.4)
    assert metrics.threshold_for(scores, positives, max_fpr=0.5) == pytest.approx(0.2)
    assert metrics.threshold_for(scores, [0, 0, 0, 0]) is None
    assert metrics.threshold_for([], []) is None


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    values = np.asarray([0.0, 1.0] * 50)

    def mean(idx: np.ndarray) -> float:
        return float(values[idx].mean())

    first = metrics.estimate(mean, len(values), seed=3)
    assert first == metrics.estimate(mean, len(values), seed=3)
    assert first.value == pytest.approx(0.5)
    assert first.low is not None and first.high is not None
    assert first.low < 0.5 < first.high
    assert metrics.bootstrap(mean, 0) == (None, None)


def test_undefined_statistic_has_no_interval():
    estimate = metrics.estimate(lambda idx: None, 5)
    assert estimate.value is None and estimate.low is None and estimate.high is None


def test_paired_difference_of_a_statistic_with_itself_is_zero():
    values = np.linspace(0, 1, 40)

    def mean(idx: np.ndarray) -> float:
        return float(values[idx].mean())

    difference, p_value = metrics.paired_difference(mean, mean, len(values))
    assert difference.value == 0.0 and difference.low == 0.0 and difference.high == 0.0
    assert p_value == 1.0
    shifted, p_shift = metrics.paired_difference(mean, lambda idx: mean(idx) + 0.1, len(values))
    assert shifted.value == pytest.approx(0.1) and p_shift == 0.0


def test_percentile():
    assert metrics.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert metrics.percentile([], 95) is None


def _row(i: int, label: str, score: float | None, error: str | None = None) -> ItemResult:
    verdict = None if score is None else ("unethical" if score >= 0.5 else "ethical")
    return ItemResult(
        id=f"r{i}",
        requested="three_laws",
        kind="judge",
        label=label,
        verdict=verdict,
        score=score,
        error=error,
        source="hand",
        latency_ms={"review": 10.0 * (i + 1)},
    )


def test_report_leaves_failed_reviews_out_of_the_rates():
    rows = [
        _row(0, "harmful", 0.9),
        _row(1, "harmful", 0.2),
        _row(2, "benign", 0.6),
        _row(3, "benign", 0.1),
        _row(4, "harmful", None, error="timeout: too slow"),
    ]
    config = RunConfig(dataset="hand", dataset_digest="0", frameworks=["three_laws"])
    report = build_report(rows, config, "http://server", threshold=0.15)
    judge = report.frameworks[0].judge
    assert judge is not None
    assert judge.n == 5 and judge.errors == 1 and judge.verdicts["error"] == 1
    # scores .9(H) .2(H) .6(B) .1(B): pairs 1, 0, 1, 1 -> 3/4
    assert judge.auroc.value == pytest.approx(0.75)
    by_verdict, by_threshold = judge.detection
    assert (by_verdict.confusion.tp, by_verdict.confusion.fp) == (1, 1)
    assert by_threshold.rule == "score >= 0.15"
    assert (by_threshold.confusion.tp, by_threshold.confusion.fp, by_threshold.confusion.tn) == (
        2,
        1,
        1,
    )
    assert judge.suggested_thresholds["max_f1"] == pytest.approx(0.2)
