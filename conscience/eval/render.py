"""Write a report: ``report.json``, ``report.md`` and PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from conscience.eval.metrics import Estimate
from conscience.eval.report import Detection, FrameworkReport, Report
from conscience.eval.runner import ItemResult

MIN_PLOTTED_SCORE = 1e-4


def pct(value: float | None) -> str:
    """A rate as a percentage, ``-`` where undefined."""
    return "-" if value is None else f"{100 * value:.1f}%"


def num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def est(value: Estimate, percent: bool = False) -> str:
    """``0.612 [0.551, 0.670]``: a point estimate and its 95% interval."""
    show = pct if percent else num
    if value.value is None:
        return "-"
    if value.low is None:
        return show(value.value)
    return f"{show(value.value)} [{show(value.low)}, {show(value.high)}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _detection_cells(d: Detection) -> list[str]:
    c = d.confusion
    return [
        d.rule,
        f"{c.tp}/{c.fp}/{c.tn}/{c.fn}",
        est(d.precision, True),
        est(d.recall, True),
        est(d.f1),
        est(d.fpr, True),
    ]


def _judge_lines(frameworks: Sequence[FrameworkReport]) -> list[str]:
    rows, thresholds = [], []
    for fw in frameworks:
        j = fw.judge
        if j is None:
            continue
        means = f"{num(j.mean_score['harmful'])} / {num(j.mean_score['benign'])}"
        for d in j.detection:
            head = [fw.framework, fw.review_layout or "-", str(j.n), str(j.errors), est(j.auroc)]
            by_score = [num(j.auroc_by_score.get(k)) for k in ("raw_score", "readout_score")]
            profile = ", ".join(j.calibration) or "-"
            rows.append([*head, *by_score, profile, num(j.ece), means, *_detection_cells(d)])
        thresholds.append([fw.framework, *(num(t, 4) for t in j.suggested_thresholds.values())])
    if not rows:
        return []
    header = ["framework", "layout", "n", "errors", "AUROC [95% CI]", "AUROC question (raw)"]
    header += ["AUROC read-out", "calibration", "ECE", "mean score H / B"]
    header += ["rule", "TP/FP/TN/FN", "precision", "recall", "F1", "FPR"]
    caps = next(fw.judge for fw in frameworks if fw.judge).suggested_thresholds
    return [
        "## Judge on fixed answers",
        "",
        *_table(header, rows),
        "",
        "Thresholds chosen on *this* data (flag when score >= t); apply them to another split:",
        "",
        *_table(["framework", *caps], thresholds),
        "",
    ]


def _chat_lines(frameworks: Sequence[FrameworkReport]) -> list[str]:
    rows = []
    for fw in frameworks:
        c = fw.chat
        if c is None:
            continue
        lat = c.latency_ms
        timing = [f"{num(lat[s]['p50'], 0)} / {num(lat[s]['p95'], 0)}" for s in lat]
        refusals = f"{pct(c.draft_refusal_rate['harmful'])} / {pct(c.draft_refusal_rate['benign'])}"
        for d in c.detection:
            rows.append(
                [
                    *(fw.framework, str(c.n), str(c.errors), d.rule, est(d.recall, True)),
                    *(est(d.fpr, True), pct(c.rewrite_rate), pct(c.rewrite_copy_rate)),
                    pct(c.rewrite_pass_rate),
                    *(pct(c.rewrite_refusal_rate), refusals, *timing, pct(c.review_share)),
                ]
            )
    if not rows:
        return []
    header = ["framework", "n", "errors", "rule", "flagged harmful prompts (recall)"]
    header += ["flagged benign prompts (FPR)", "rewrite rate", "rewrites copying the draft"]
    header += ["rewrites passing re-review"]
    header += ["rewrite refusals", "draft refusals H / B", "draft ms p50/p95", "review ms"]
    header += ["rewrite ms", "total ms", "review share of time"]
    return ["## Pipeline on prompts (the server drafts)", "", *_table(header, rows), ""]


def _injection_lines(frameworks: Sequence[FrameworkReport]) -> list[str]:
    rows = [
        [
            *(fw.framework, i.name, i.rule, str(i.pairs), str(i.base_flagged), str(i.escaped)),
            *(pct(i.escape_rate), pct(i.flip_rate), pct(i.lowered_rate), est(i.score_delta)),
        ]
        for fw in frameworks
        for i in fw.injections
    ]
    if not rows:
        return []
    header = ["framework", "injection", "rule", "pairs", "flagged without it", "escaped"]
    header += ["escape rate", "decision flipped", "score lowered", "mean score change [95% CI]"]
    return ["## Prompt injection aimed at the judge", "", *_table(header, rows), ""]


def _group_lines(frameworks: Sequence[FrameworkReport]) -> list[str]:
    lines: list[str] = []
    for fw in frameworks:
        groups = fw.judge.by_source if fw.judge else fw.chat.by_category if fw.chat else []
        if len(groups) < 2:
            continue
        rows = [
            [g.name, str(g.n), str(g.harmful), pct(g.flag_rate), num(g.mean_score)] for g in groups
        ]
        title = "source" if fw.judge else "category"
        lines += [f"### {fw.framework}: by {title}", ""]
        lines += [*_table([title, "n", "harmful", "flag rate", "mean score"], rows), ""]
    return lines


def markdown(report: Report) -> str:
    """``report.md``: the tables a reader needs, CIs included."""
    run = report.run
    head = [
        "# Conscience evaluation",
        "",
        f"- dataset: `{run.dataset}` (sha256 {run.dataset_digest})",
        f"- server: {report.server}; mode {run.mode}; max_tokens {run.max_tokens}; seed {run.seed}",
        f"- threshold: {num(report.threshold, 4) if report.threshold is not None else 'none'}"
        " (besides the server's own verdict)",
        "- intervals: 95% percentile bootstrap, 1000 resamples; `-`: undefined (empty denominator)",
        f"- created: {report.created_at}",
        "",
    ]
    body = _judge_lines(report.frameworks) + _chat_lines(report.frameworks)
    body += _injection_lines(report.frameworks) + _group_lines(report.frameworks)
    plots = [f"![{p}]({p})" for p in report.plots]
    return "\n".join(head + body + plots) + "\n"


def write_plots(report: Report, results: Sequence[ItemResult], out: Path) -> list[str]:
    """Reliability diagram and score histograms per framework; returns relative paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for fw in report.frameworks:
        if fw.judge is None:
            continue
        rows = [
            r
            for r in results
            if r.requested == fw.requested
            and r.kind == "judge"
            and r.injection is None
            and r.score is not None
        ]
        name = fw.requested.replace("/", "_")
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        bins = [b for b in fw.judge.reliability if b.count]
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
        ax.plot(
            [b.mean_score for b in bins], [b.positive_rate for b in bins], marker="o", label=name
        )
        ax.set(
            xlabel="mean score (P(unethical))", ylabel="fraction harmful", xlim=(0, 1), ylim=(0, 1)
        )
        ax.set_title(f"Reliability: {name} (ECE {num(fw.judge.ece)})")
        ax.legend(loc="upper left")
        written.append(_save(plt, fig, out, f"reliability-{name}.png"))
        written.append(_histogram(plt, rows, name, out))
    return written


def _histogram(plt, rows: Sequence[ItemResult], name: str, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    edges = np.logspace(np.log10(MIN_PLOTTED_SCORE), 0, 41)
    for label, color in (("harmful", "tab:red"), ("benign", "tab:blue")):
        scores = [max(r.score or 0.0, MIN_PLOTTED_SCORE) for r in rows if r.label == label]
        ax.hist(scores, bins=edges, alpha=0.55, color=color, label=f"{label} (n={len(scores)})")
    ax.set_xscale("log")
    ax.set(xlabel="score P(unethical), log scale", ylabel="rows", title=f"Scores: {name}")
    ax.legend()
    return _save(plt, fig, out, f"scores-{name}.png")


def _save(plt, fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def write_report(
    report: Report, results: Sequence[ItemResult], out: Path, plots: bool = True
) -> Report:
    """Write report.json, report.md and (optionally) the plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    if plots:
        report = report.model_copy(update={"plots": write_plots(report, results, out)})
    (out / "report.json").write_text(report.model_dump_json(indent=2), encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    return report
