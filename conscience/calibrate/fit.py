"""Fit a calibration profile from judged dev rows: Platt scaling, read-out, threshold.

Platt scaling is kept monotone: a question that ranks harm backwards on dev is not turned
around (its calibrated score falls back to the dev base rate, carrying no ranking).

Every figure that picks something (read-out regularisation, question vs read-out, the
threshold at the target false-positive rate) is computed on stratified 5-fold out-of-fold
predictions; the profile's dev figures are those out-of-fold ones, and the final models are
then refitted on all rows. When the rows name several sources, the read-out's
leave-one-source-out AUROC is reported beside them (not used to choose: with single-class
sources held out, pooled predictions of different fits mix calibrations and understate it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.conscience.calibration import DevFigures, Platt, Readout
from conscience.eval.metrics import auroc, ece, threshold_for

FOLDS = 5
READOUT_C = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
Decision = Literal["auto", "question", "readout"]


@dataclass(frozen=True)
class Fitted:
    """What ``fit`` chose, ready to go into a profile."""

    question: Platt
    readout: Readout | None
    decision: Literal["question", "readout"]
    threshold: float
    dev: DevFigures
    out_of_fold: np.ndarray


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _folds(y: np.ndarray):
    from sklearn.model_selection import StratifiedKFold

    folds = min(FOLDS, int(y.sum()), int((1 - y).sum()))
    return list(StratifiedKFold(folds, shuffle=True, random_state=0).split(y, y))


def _source_folds(y: np.ndarray, groups: Sequence[str]):
    from sklearn.model_selection import LeaveOneGroupOut

    return list(LeaveOneGroupOut().split(y, y, groups=list(groups)))


def _platt_model():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1e4, max_iter=1000)


def _readout_model(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))


def _out_of_fold(make, x: np.ndarray, y: np.ndarray, splits) -> np.ndarray:
    pred = np.zeros(len(y))
    for train, test in splits:
        if len(set(y[train].tolist())) < 2:  # a fold without both classes cannot be fitted
            pred[test] = y[train].mean()
            continue
        pred[test] = make().fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    return pred


def fit(
    raw: np.ndarray,
    features: np.ndarray,
    token_ids: Sequence[int],
    tokens: Sequence[str],
    y: np.ndarray,
    target_fpr: float,
    decision: Decision = "auto",
    groups: Sequence[str] | None = None,
) -> Fitted:
    """Fit on dev rows: ``raw`` question scores, read-out ``features`` (rows by token_ids).

    With ``groups`` (each row's source, 3 or more sources) the read-out's leave-one-source-out
    AUROC is reported too, as a check of how it carries over to data of another kind.
    """
    positives = [bool(v) for v in y]
    splits = _folds(y)
    question_oof = _out_of_fold(_platt_model, _logit(raw)[:, None], y, splits)
    platt = _platt_model().fit(_logit(raw)[:, None], y)
    question = Platt(slope=float(platt.coef_[0][0]), intercept=float(platt.intercept_[0]))
    if question.slope < 0:  # the question ranks harm backwards on dev: keep it monotone and
        base = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))  # let it say only the base rate
        question = Platt(slope=0.0, intercept=float(np.log(base / (1 - base))))
        question_oof = np.full(len(y), base)

    best_c, readout_oof, readout_auc = None, None, None
    if decision != "question":
        for c in READOUT_C:
            oof = _out_of_fold(lambda c=c: _readout_model(c), features, y, splits)
            score = auroc(oof.tolist(), positives)
            if readout_auc is None or (score is not None and score > readout_auc):
                best_c, readout_oof, readout_auc = c, oof, score
    question_auc = auroc(raw.tolist(), positives)  # ranking is invariant to Platt scaling
    loso_auc = None
    if best_c is not None and groups is not None and len(set(groups)) >= 3:
        loso = _out_of_fold(lambda: _readout_model(best_c), features, y, _source_folds(y, groups))
        loso_auc = auroc(loso.tolist(), positives)
    use_readout = decision == "readout" or (
        decision == "auto"
        and readout_auc is not None
        and question_auc is not None
        and readout_auc > question_auc + 0.01
    )
    readout = None
    if best_c is not None:
        model = _readout_model(best_c).fit(features, y)
        scaler, logistic = (
            model.named_steps["standardscaler"],
            model.named_steps["logisticregression"],
        )
        readout = Readout(
            token_ids=list(token_ids),
            tokens=list(tokens),
            mean=scaler.mean_.tolist(),
            scale=np.where(scaler.scale_ > 0, scaler.scale_, 1.0).tolist(),
            weights=logistic.coef_[0].tolist(),
            intercept=float(logistic.intercept_[0]),
        )
    oof = readout_oof if use_readout else question_oof
    threshold = threshold_for(oof.tolist(), positives, max_fpr=target_fpr)
    threshold = 1.0 if threshold is None else float(threshold)
    flags = oof >= threshold
    dev = DevFigures(
        auroc_question=question_auc,
        auroc_readout=readout_auc,
        auroc_readout_by_source=loso_auc,
        ece=ece(oof.tolist(), positives),
        fpr=float(flags[y == 0].mean()),
        tpr=float(flags[y == 1].mean()),
    )
    return Fitted(question, readout, "readout" if use_readout else "question", threshold, dev, oof)
