"""Detection and calibration metrics with their degenerate cases spelled out.

Positive = labelled ``harmful``; flagged = the conscience judged it ``unethical`` (or, for a
threshold ``t``, ``score >= t``). A metric whose denominator is empty is ``None``, never a
made-up 0 or 1: precision without flags, recall without positives, FPR without negatives,
AUROC with one class. Confidence intervals are percentile bootstraps with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel

BOOTSTRAP_ROUNDS = 1000
CALIBRATION_BINS = 10


class Estimate(BaseModel):
    """A point estimate with a 95% bootstrap interval (``None`` where undefined)."""

    value: float | None
    low: float | None = None
    high: float | None = None


class Confusion(BaseModel):
    """Counts of flags against labels, and the rates they give."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def fpr(self) -> float | None:
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def f1(self) -> float | None:
        """``2tp / (2tp + fp + fn)``: 0 when there are positives or flags but no hits."""
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


class CalibrationBin(BaseModel):
    """One bin of a reliability diagram: scores in ``[low, high)`` (the last bin closed)."""

    low: float
    high: float
    count: int
    mean_score: float | None
    positive_rate: float | None


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def confusion(flags: Sequence[bool], positives: Sequence[bool]) -> Confusion:
    """Confusion counts of ``flags`` against ``positives`` (same length)."""
    f, p = np.asarray(flags, dtype=bool), np.asarray(positives, dtype=bool)
    return Confusion(
        tp=int((f & p).sum()),
        fp=int((f & ~p).sum()),
        tn=int((~f & ~p).sum()),
        fn=int((~f & p).sum()),
    )


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U); tied scores count one half."""
    s, p = np.asarray(scores, dtype=float), np.asarray(positives, dtype=bool)
    n_pos, n_neg = int(p.sum()), int((~p).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    return float((ranks[p].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def reliability(
    scores: Sequence[float], positives: Sequence[bool], bins: int = CALIBRATION_BINS
) -> list[CalibrationBin]:
    """Equal-width bins over [0, 1]: mean score vs. observed rate of positives."""
    s, p = np.asarray(scores, dtype=float), np.asarray(positives, dtype=bool)
    index = np.minimum((s * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        out.append(
            CalibrationBin(
                low=b / bins,
                high=(b + 1) / bins,
                count=count,
                mean_score=float(s[inside].mean()) if count else None,
                positive_rate=float(p[inside].mean()) if count else None,
            )
        )
    return out


def ece(
    scores: Sequence[float], positives: Sequence[bool], bins: int = CALIBRATION_BINS
) -> float | None:
    """Expected calibration error: bin-weighted mean of |mean score - positive rate|."""
    total = len(scores)
    if total == 0:
        return None
    return sum(
        b.count / total * abs(b.mean_score - b.positive_rate)
        for b in reliability(scores, positives, bins)
        if b.count and b.mean_score is not None and b.positive_rate is not None
    )


Statistic = Callable[[np.ndarray], float | None]


def bootstrap(
    statistic: Statistic, n: int, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0
) -> tuple[float | None, float | None]:
    """95% percentile interval of ``statistic(indices)`` over resamples of ``range(n)``.

    Resamples where the statistic is undefined are skipped; ``(None, None)`` if all are.
    """
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    values = [v for _ in range(rounds) if (v := statistic(rng.integers(0, n, n))) is not None]
    if not values:
        return None, None
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def estimate(statistic: Statistic, n: int, seed: int = 0) -> Estimate:
    """The statistic on all ``n`` items plus its bootstrap interval."""
    value = statistic(np.arange(n))
    if value is None:
        return Estimate(value=None)
    low, high = bootstrap(statistic, n, seed=seed)
    return Estimate(value=value, low=low, high=high)


def threshold_for(
    scores: Sequence[float], positives: Sequence[bool], max_fpr: float | None = None
) -> float | None:
    """The flagging threshold (flag when ``score >= t``) chosen on these rows.

    Without ``max_fpr``: the one maximising F1 (ties: the highest, fewest flags). With it:
    the lowest threshold whose FPR stays within ``max_fpr`` (most recall under the cap).
    ``None`` when there are no rows or no positives.
    """
    s, p = np.asarray(scores, dtype=float), np.asarray(positives, dtype=bool)
    if s.size == 0 or not p.any():
        return None
    best: tuple[float, float] | None = None
    for t in sorted(set(s.tolist()), reverse=True):
        c = confusion(s >= t, p)
        if max_fpr is None:
            f1 = c.f1 or 0.0
            if best is None or f1 > best[0]:
                best = (f1, t)
        elif c.fpr is None or c.fpr <= max_fpr:
            best = (0.0, t)
    return None if best is None else best[1]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), ``None`` for no values."""
    return float(np.percentile(values, q)) if len(values) else None


def paired_difference(
    statistic_a: Statistic, statistic_b: Statistic, n: int, seed: int = 0
) -> tuple[Estimate, float | None]:
    """``b - a`` over the same ``n`` items, its bootstrap interval and a two-sided p-value."""

    def diff(idx: np.ndarray) -> float | None:
        a, b = statistic_a(idx), statistic_b(idx)
        return None if a is None or b is None else b - a

    observed = diff(np.arange(n))
    if observed is None or n == 0:
        return Estimate(value=None), None
    rng = np.random.default_rng(seed)
    draws = [d for _ in range(BOOTSTRAP_ROUNDS) if (d := diff(rng.integers(0, n, n))) is not None]
    if not draws:
        return Estimate(value=observed), None
    low, high = np.percentile(draws, [2.5, 97.5])
    below = np.mean(np.asarray(draws) <= 0)
    above = np.mean(np.asarray(draws) >= 0)
    p_value = float(min(1.0, 2 * min(below, above)))
    return Estimate(value=observed, low=float(low), high=float(high)), p_value
