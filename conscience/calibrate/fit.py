"""Fit a calibration profile from judged dev rows: Platt scaling, read-out, threshold.

Platt scaling is kept monotone: a question that ranks harm backwards on dev is not turned
around (its calibrated score falls back to the dev base rate, carrying no ranking).

Every figure that picks something (read-out regularisation, question vs read-out, the
threshold at the target false-positive rate) is computed on stratified 5-fold out-of-fold
predictions; the profile's dev figures are those out-of-fold ones, and the final models are
then refitted on all rows. When the rows name several sources, the read-out's
leave-one-source-out AUROC is reported beside them (not used to choose: with single-class
sources held out, pooled predictions of different fits mix calibrations and understate it).

The read-out's expected calibration error on predictions for each source held out is
reported too (``ece_by_source``): how far its probabilities are off on data of a kind it did
not see. ``probabilities="sources-held-out"`` (opt-in) softens them for such data: a Platt map
with its slope held in [MIN_SOFTENING, 1], fitted on the leave-one-source-out predictions, is
folded into the read-out's weights and the threshold mapped with it, so every decision and
ranking stays what it was. On our dev data it did not help (docs/EVALUATION.md R2.9: with
only two dev families the map hit its floor and the family-held-out ECE went 0.576 → 0.584),
so the default keeps the 5-fold probabilities.
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
MIN_SOFTENING = 0.1
Decision = Literal["auto", "question", "readout"]
Probabilities = Literal["sources-held-out", "folds"]


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


def softening_map(probabilities: np.ndarray, y: np.ndarray) -> Platt:
    """Platt map of logit(``probabilities``) fitted by likelihood, slope in [MIN_SOFTENING, 1].

    It only ever softens: a slope above 1 would sharpen a read-out on the strength of the
    sources it was fitted on.
    """
    from scipy.optimize import minimize

    z = _logit(probabilities)

    def nll(params: np.ndarray) -> float:
        t = params[0] * z + params[1]
        return float(np.sum(np.logaddexp(0.0, t) - y * t))

    best = minimize(nll, np.array([1.0, 0.0]), bounds=[(MIN_SOFTENING, 1.0), (None, None)])
    return Platt(slope=float(best.x[0]), intercept=float(best.x[1]))


def _softened(readout: Readout, m: Platt) -> Readout:
    return readout.model_copy(
        update={
            "weights": [m.slope * w for w in readout.weights],
            "intercept": m.slope * readout.intercept + m.intercept,
        }
    )


def _apply(m: Platt, p: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(m.slope * _logit(p) + m.intercept)))


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
    probabilities: Probabilities = "folds",
) -> Fitted:
    """Fit on dev rows: ``raw`` question scores, read-out ``features`` (rows by token_ids).

    With ``groups`` (each row's source, 3 or more sources) the read-out's leave-one-source-out
    AUROC is reported too, as a check of how it carries over to data of another kind, and
    with ``probabilities="sources-held-out"`` its probabilities are softened for such data.
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
    loso_auc, loso = None, None
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
    softening, ece_by_source = None, None
    if use_readout and readout is not None and loso is not None:
        if probabilities == "sources-held-out":
            softening = softening_map(loso, y)
            readout = _softened(readout, softening)
            oof, loso = _apply(softening, oof), _apply(softening, loso)
            threshold = float(_apply(softening, np.array([threshold]))[0]) if threshold < 1 else 1.0
        ece_by_source = ece(loso.tolist(), positives)
    dev = DevFigures(
        auroc_question=question_auc,
        auroc_readout=readout_auc,
        auroc_readout_by_source=loso_auc,
        ece=ece(oof.tolist(), positives),
        fpr=float(flags[y == 0].mean()),
        tpr=float(flags[y == 1].mean()),
        ece_by_source=ece_by_source,
        softening=softening,
    )
    return Fitted(question, readout, "readout" if use_readout else "question", threshold, dev, oof)
