"""Two runs (or two frameworks of one run) side by side, with paired bootstrap differences.

A side is ``DIR`` or ``DIR:FRAMEWORK`` (a run directory holding ``results.jsonl``), with an
optional threshold (flag when ``score >= t``; without one the server's verdict decides).
Only rows present on both sides are compared, resampled together, so the interval and the
p-value are about the change, not about two different samples.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from conscience.eval import metrics
from conscience.eval.metrics import Estimate
from conscience.eval.render import est, num
from conscience.eval.runner import RESULTS_FILE, ItemResult, RunError, load_results


class Side(BaseModel):
    """One side of a comparison."""

    run: str
    framework: str
    threshold: float | None = None

    @property
    def label(self) -> str:
        rule = "verdict" if self.threshold is None else f"score>={self.threshold:.4g}"
        return f"{self.run}:{self.framework} ({rule})"


class MetricDiff(BaseModel):
    metric: str
    a: float | None
    b: float | None
    difference: Estimate
    p_value: float | None


class Comparison(BaseModel):
    a: Side
    b: Side
    kind: str
    paired: int
    metrics: list[MetricDiff]


def side_rows(spec: str) -> tuple[str, str, list[ItemResult]]:
    """(run dir, framework, usable rows) for ``DIR`` or ``DIR:FRAMEWORK``."""
    run, _, framework = spec.partition(":")
    rows = [r for r in load_results(Path(run) / RESULTS_FILE) if r.injection is None]
    if not rows:
        raise RunError(f"{run}: no results ({RESULTS_FILE})")
    names = sorted({r.requested for r in rows})
    if not framework:
        if len(names) != 1:
            raise RunError(f"{run} has several frameworks; say which: {', '.join(names)}")
        framework = names[0]
    chosen = [
        r for r in rows if r.requested == framework and r.error is None and r.score is not None
    ]
    if not chosen:
        raise RunError(f"{run}: no usable results for framework {framework!r} (have {names})")
    return run, framework, chosen


def _statistics(
    flags: np.ndarray, scores: np.ndarray, pos: np.ndarray
) -> dict[str, metrics.Statistic]:
    def rate(name: str) -> metrics.Statistic:
        return lambda idx: getattr(metrics.confusion(flags[idx], pos[idx]), name)

    return {
        "AUROC": lambda idx: metrics.auroc(scores[idx], pos[idx]),
        "ECE": lambda idx: metrics.ece(scores[idx], pos[idx]),
        "F1": rate("f1"),
        "precision": rate("precision"),
        "recall": rate("recall"),
        "FPR": rate("fpr"),
        "flag rate": lambda idx: float(flags[idx].mean()),
    }


def compare(
    a_spec: str, b_spec: str, a_threshold: float | None, b_threshold: float | None
) -> Comparison:
    """Paired differences ``b - a`` of detection and calibration metrics."""
    run_a, fw_a, rows_a = side_rows(a_spec)
    run_b, fw_b, rows_b = side_rows(b_spec)
    kinds = {r.kind for r in rows_a} & {r.kind for r in rows_b}
    kind = "judge" if "judge" in kinds else "chat"
    index_a = {r.id: r for r in rows_a if r.kind == kind}
    index_b = {r.id: r for r in rows_b if r.kind == kind}
    ids = sorted(index_a.keys() & index_b.keys())
    if not ids:
        raise RunError("the two sides share no rows (compare runs over the same dataset)")
    pos = np.asarray([index_a[i].label == "harmful" for i in ids], dtype=bool)
    stats = []
    for index, threshold in ((index_a, a_threshold), (index_b, b_threshold)):
        scores = np.asarray([index[i].score for i in ids], dtype=float)
        decide = _flagger(threshold)
        flags = np.asarray([decide(index[i]) for i in ids], dtype=bool)
        stats.append(_statistics(flags, scores, pos))
    diffs = []
    for name, stat_a in stats[0].items():
        stat_b = stats[1][name]
        difference, p_value = metrics.paired_difference(stat_a, stat_b, len(ids))
        everything = np.arange(len(ids))
        diffs.append(
            MetricDiff(
                metric=name,
                a=stat_a(everything),
                b=stat_b(everything),
                difference=difference,
                p_value=p_value,
            )
        )
    return Comparison(
        a=Side(run=run_a, framework=fw_a, threshold=a_threshold),
        b=Side(run=run_b, framework=fw_b, threshold=b_threshold),
        kind=kind,
        paired=len(ids),
        metrics=diffs,
    )


def _flagger(threshold: float | None) -> Callable[[ItemResult], bool]:
    if threshold is None:
        return lambda r: r.verdict == "unethical"
    return lambda r: r.score is not None and r.score >= threshold


def comparison_markdown(c: Comparison) -> str:
    """The comparison as a markdown table (difference = B - A)."""
    lines = [
        f"A = {c.a.label}; B = {c.b.label}; {c.paired} paired {c.kind} rows; "
        "difference B - A with 95% paired-bootstrap interval",
        "",
        "| metric | A | B | B - A [95% CI] | p |",
        "|---|---|---|---|---|",
    ]
    for m in c.metrics:
        p = "-" if m.p_value is None else f"{m.p_value:.3f}"
        lines.append(f"| {m.metric} | {num(m.a)} | {num(m.b)} | {est(m.difference)} | {p} |")
    return "\n".join(lines) + "\n"
