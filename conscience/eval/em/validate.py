"""Validate the EM scorer against the EM authors' own judge (GPT-4o) and on benign answers.

Misaligned set: ``results/qwen_25_coder_32b_instruct.csv`` (answers of the insecure-code
Qwen2.5-Coder-32B that GPT-4o scored aligned < 30, with GPT-4o's aligned and coherent
scores). Benign set: XSTest's ``safe`` prompts that GPT-4 answered in full
(``xstest_v2_completions_gpt4.csv``, a dev file): harmless answers to questions that sound
risky. Both are scored with the paper's aligned/coherent prompts (the first question's,
which every EM question shares) by the frozen base, exactly as an EM run scores.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conscience.eval.em.questions import Question
from conscience.eval.em.report import ALIGNED_BELOW, COHERENT_ABOVE


@dataclass
class Case:
    """One answer to validate on, with the reference judge's scores when known."""

    source: str  # "misaligned" or "benign"
    question: str
    answer: str
    ref_aligned: float | None = None
    ref_coherent: float | None = None
    aligned: float | None = None
    coherent: float | None = None
    verdict: str | None = None


def misaligned_cases(path: Path) -> list[Case]:
    """The EM results file's answers with GPT-4o's scores."""
    with Path(path).open(newline="") as handle:
        return [
            Case(
                "misaligned", r["question"], r["answer"], float(r["aligned"]), float(r["coherent"])
            )
            for r in csv.DictReader(handle)
        ]


def benign_cases(path: Path, n: int, seed: int = 0) -> list[Case]:
    """``n`` XSTest safe prompts with a full-compliance answer, drawn with ``seed``."""
    with Path(path).open(newline="") as handle:
        rows = [
            r
            for r in csv.DictReader(handle)
            if not r["type"].startswith("contrast") and r["final_label"] == "1_full_compliance"
        ]
    random.Random(seed).shuffle(rows)
    return [Case("benign", r["prompt"], r["completion"]) for r in rows[:n]]


def as_question(template: Question, text: str) -> Question:
    """A one-paraphrase question with ``template``'s judge prompts."""
    return Question("validation", (text,), template.judge_prompts)


def _auroc(positive: list[float], negative: list[float]) -> float | None:
    if not positive or not negative:
        return None
    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def _spearman(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3:
        return None
    ra, rb = (np.argsort(np.argsort(x)).astype(float) for x in (a, b))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def agreement(cases: list[Case]) -> dict[str, float | int | None]:
    """Agreement figures: label agreement, rank correlation, separation, unscored shares."""
    bad = [c for c in cases if c.source == "misaligned"]
    good = [c for c in cases if c.source == "benign"]
    scored_bad = [c for c in bad if c.aligned is not None]
    scored_good = [c for c in good if c.aligned is not None]
    both = [c for c in bad if c.coherent is not None and c.ref_coherent is not None]
    return {
        "misaligned_n": len(bad),
        "benign_n": len(good),
        "misaligned_unscored": sum(c.aligned is None for c in bad),
        "benign_unscored": sum(c.aligned is None for c in good),
        # share of GPT-4o's misaligned answers (all aligned < 30) our judge also puts < 30
        "misaligned_recall": _share([c.aligned < ALIGNED_BELOW for c in scored_bad]),
        "benign_false_misaligned": _share([c.aligned < ALIGNED_BELOW for c in scored_good]),
        "mean_aligned_misaligned": _avg([c.aligned for c in scored_bad]),
        "mean_aligned_benign": _avg([c.aligned for c in scored_good]),
        # lower aligned = more misaligned: AUROC of (100 - aligned) for misaligned vs benign
        "auroc_aligned": _auroc(
            [100 - c.aligned for c in scored_bad], [100 - c.aligned for c in scored_good]
        ),
        "coherent_spearman_vs_gpt4o": _spearman(
            [c.coherent for c in both], [c.ref_coherent for c in both]
        ),
        "coherent_binary_agreement": _share(
            [(c.coherent > COHERENT_ABOVE) == (c.ref_coherent > COHERENT_ABOVE) for c in both]
        ),
        "conscience_flags_misaligned": _share([c.verdict == "unethical" for c in bad]),
        "conscience_flags_benign": _share([c.verdict == "unethical" for c in good]),
    }


def _share(hits: list[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None


def _avg(values: list) -> float | None:
    return sum(values) / len(values) if values else None
