"""Calibration profiles and the verdict they produce: apply, match, refuse, fit."""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pytest

from app.conscience.calibration import (
    SHIPPED_PACKAGE,
    CalibrationError,
    CalibrationProfile,
    DevFigures,
    FittedOn,
    Numerics,
    Platt,
    ProfileBook,
    Readout,
    load_profile,
    model_fingerprint,
    save_profile,
    shipped_profiles,
)
from app.conscience.frameworks import FrameworkCatalog
from app.conscience.prompts import review_prompt_hash
from app.conscience.verdict import Judge, JudgeBook
from app.settings import ReviewLayout
from conscience.calibrate.fit import fit

VOCAB = {"Yes": 1, "No": 2, "Sorry": 3, "Sure": 4}
NAMES = {v: k for k, v in VOCAB.items()}


def encode(text: str) -> list[int]:
    word = text.strip().capitalize()
    return [VOCAB[word]] if word in VOCAB else []


def framework():
    base = FrameworkCatalog.load().get("introspective")
    return base.model_copy(update={"labels": "yes_no"})


def profile(**changes) -> CalibrationProfile:
    fw = framework()
    fields = {
        "name": "m.introspective",
        "model": "fp1",
        "framework": fw.name,
        "review_prompt_hash": review_prompt_hash(fw, ReviewLayout.framework_first),
        "question": Platt(slope=1.0, intercept=0.0),
        "threshold": 0.3,
        "target_fpr": 0.05,
        "fitted_on": FittedOn(dataset="dev.jsonl", digest="d", harmful=10, benign=10),
    }
    return CalibrationProfile(**{**fields, **changes})


def logprobs(p_yes: float, sorry: float = -5.0) -> dict[int, float]:
    return {1: math.log(p_yes), 2: math.log(1 - p_yes), 3: sorry, 4: -3.0}


def judge(p: CalibrationProfile | None) -> Judge:
    return Judge(framework(), ReviewLayout.framework_first, encode, NAMES.__getitem__, p)


def test_without_a_profile_the_top_label_decides():
    j = judge(None).judge(logprobs(0.4), None)
    assert (j.verdict.value, j.profile) == ("ethical", None)
    assert j.score == pytest.approx(0.4) and j.raw_score == pytest.approx(0.4)
    assert judge(None).judge(logprobs(0.6), None).verdict.value == "unethical"


def test_the_profile_threshold_decides_and_a_flag_threshold_overrides_it():
    p = profile()
    j = judge(p).judge(logprobs(0.35), None)
    assert j.verdict.value == "unethical" and j.profile == p.id
    assert judge(p).judge(logprobs(0.35), 0.5).verdict.value == "ethical"


def test_platt_scaling_is_applied_to_the_score():
    p = profile(question=Platt(slope=2.0, intercept=-1.0))
    j = judge(p).judge(logprobs(0.5), None)
    assert j.raw_score == pytest.approx(0.5)
    assert j.score == pytest.approx(1 / (1 + math.exp(1.0)))


def test_a_readout_decides_when_the_profile_says_so():
    readout = Readout(
        token_ids=[3, 4],
        tokens=["Sorry", "Sure"],
        mean=[-5.0, -3.0],
        scale=[1.0, 1.0],
        weights=[-2.0, 0.0],
        intercept=0.0,
    )
    p = profile(decision="readout", readout=readout, threshold=0.5)
    refusal = judge(p).judge(logprobs(0.9, sorry=-1.0), None)  # says Yes, but starts "Sorry"
    assert refusal.readout_score == pytest.approx(1 / (1 + math.exp(8.0)))
    assert refusal.score == refusal.readout_score and refusal.verdict.value == "ethical"
    assert refusal.question_score == pytest.approx(0.9)
    assert set(judge(p).token_ids) == {1, 2, 3, 4}


def test_readout_tokens_must_match_the_tokenizer():
    readout = Readout(
        token_ids=[3], tokens=["Hello"], mean=[0.0], scale=[1.0], weights=[1.0], intercept=0.0
    )
    with pytest.raises(CalibrationError, match="do not match"):
        judge(profile(readout=readout))


def test_profiles_round_trip_and_their_digest_tracks_content(tmp_path):
    p = profile()
    save_profile(p, tmp_path / "p.json")
    again = load_profile(tmp_path / "p.json")
    assert again == p and again.id == p.id
    assert profile(threshold=0.31).digest != p.digest
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(CalibrationError, match=r"bad\.json"):
        load_profile(tmp_path / "bad.json")


def test_a_profile_only_applies_to_its_model_and_prompt(tmp_path):
    save_profile(profile(), tmp_path / "p.json")
    book = ProfileBook.load([tmp_path / "p.json"], "fp1", shipped=False)
    fw = framework()
    assert book.for_prompt(review_prompt_hash(fw, ReviewLayout.framework_first)) is not None
    assert book.for_prompt(review_prompt_hash(fw, ReviewLayout.continuation)) is None
    with pytest.raises(CalibrationError, match="not on the served model"):
        ProfileBook.load([tmp_path / "p.json"], "another-model", shipped=False)


def test_the_profile_fitted_in_the_engines_dtype_wins(tmp_path):
    fw_hash = review_prompt_hash(framework(), ReviewLayout.framework_first)
    bf16 = profile(numerics=Numerics(dtype="bfloat16", device="cpu (native bfloat16)"))
    fp32 = profile(numerics=Numerics(dtype="float32"), threshold=0.4)
    unrecorded = profile(threshold=0.5)
    for order in ([bf16, fp32, unrecorded], [fp32, unrecorded, bf16], [unrecorded, bf16, fp32]):
        assert ProfileBook(order, "fp1", "float32").for_prompt(fw_hash) == fp32
        assert ProfileBook(order, "fp1", "bfloat16").for_prompt(fw_hash) == bf16
        assert ProfileBook(order, "fp1", "float16").for_prompt(fw_hash) == unrecorded
    only_bf16 = ProfileBook([bf16], "fp1", "float32")
    assert only_bf16.for_prompt(fw_hash) == bf16 and only_bf16.mismatched() == [bf16]
    assert ProfileBook([bf16], "fp1", "bfloat16").mismatched() == []
    assert ProfileBook([unrecorded], "fp1", "float32").mismatched() == []
    assert ProfileBook([bf16], "fp1", None).mismatched() == []  # engine's dtype unknown


def test_numerics_round_trip_and_unrecorded_ones_leave_the_json_alone():
    fitted = profile(numerics=Numerics(dtype="float32", device="cpu (no native bfloat16)"))
    again = CalibrationProfile.model_validate_json(fitted.model_dump_json())
    assert again.numerics == fitted.numerics and again.digest == fitted.digest
    assert "numerics" not in profile().model_dump_json()
    assert fitted.digest != profile().digest


def test_auto_continues_base_drafts_unless_only_framework_first_is_calibrated(tmp_path):
    fw = framework()
    first = profile()
    cont = profile(
        name="m.introspective.continuation",
        review_prompt_hash=review_prompt_hash(fw, ReviewLayout.continuation),
    )
    save_profile(first, tmp_path / "first.json")
    save_profile(cont, tmp_path / "cont.json")

    def book(*files: str) -> JudgeBook:
        profiles = ProfileBook.load([tmp_path / f for f in files], "fp1", shipped=False)
        return JudgeBook([fw], ReviewLayout.auto, encode, NAMES.__getitem__, profiles)

    def picked(b: JudgeBook, adapter_drafted: bool) -> str:
        return b.pick(fw, adapter_drafted).layout.value

    both = book("first.json", "cont.json")
    assert picked(both, False) == "continuation" and picked(both, True) == "framework_first"
    only_first = book("first.json")
    assert picked(only_first, False) == "framework_first"  # calibrated beats cached
    assert picked(book(), False) == "continuation"  # neither calibrated: reuse the cache
    fixed = JudgeBook(
        [fw], ReviewLayout.continuation, encode, NAMES.__getitem__,
        ProfileBook.load([tmp_path / "first.json"], "fp1", shipped=False),
    )  # fmt: skip
    assert picked(fixed, True) == "continuation"  # a fixed layout is used as asked


def test_model_fingerprint_ignores_bookkeeping_keys(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8, "dtype": "float32"}))
    first = model_fingerprint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8, "dtype": "bfloat16"}))
    assert model_fingerprint(tmp_path) == first
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 16}))
    assert model_fingerprint(tmp_path) != first


def test_shipped_profiles_match_the_current_builtin_prompts():
    """A shipped profile whose framework prompt changed would silently stop applying."""
    catalog = FrameworkCatalog.load()
    hashes = {
        review_prompt_hash(catalog.get(name), layout)
        for name in catalog.names()
        for layout in ReviewLayout
    }
    profiles = shipped_profiles()
    assert profiles, "no shipped calibration profiles"
    for p in profiles:
        assert p.review_prompt_hash in hashes, p.name
        assert p.dev.fpr is not None and p.dev.fpr <= p.target_fpr + 0.02, p.name


def test_fit_picks_a_readout_that_beats_the_question_and_respects_the_fpr():
    rng = np.random.default_rng(0)
    y = np.array([1] * 60 + [0] * 60)
    raw = np.clip(0.5 + 0.1 * rng.standard_normal(120), 0.01, 0.99)  # question: no signal
    features = rng.standard_normal((120, 3))
    features[:, 0] += 2.5 * y  # one token's logprob carries the signal
    fitted = fit(raw, features, [1, 2, 3], ["a", "b", "c"], y, target_fpr=0.1)
    assert fitted.decision == "readout"
    assert fitted.dev.auroc_readout > 0.9 > 0.7 > fitted.dev.auroc_question
    assert fitted.dev.fpr <= 0.1
    assert fitted.readout is not None and fitted.readout.weights[0] > 0
    question_only = fit(raw, features, [1, 2, 3], ["a", "b", "c"], y, 0.1, decision="question")
    assert question_only.decision == "question" and question_only.readout is None


def _sources_of_another_kind(seed: int = 0):
    """Four dev sources; a strong cue in three of them is reversed in the fourth."""
    rng = np.random.default_rng(seed)
    rows, y, groups = [], [], []
    for source in "abcd":
        for label in (0, 1) * 40:
            x = rng.standard_normal(4)
            x[0] += 1.0 * label  # the signal that carries over, weakly
            x[1] += (-3.0 if source == "d" else 3.0) * label  # a cue that does not
            rows.append(x), y.append(label), groups.append(source)
    return np.array(rows), np.array(y), groups


def test_probabilities_are_softened_for_unseen_sources_without_changing_a_decision():
    features, y, groups = _sources_of_another_kind()
    raw = np.full(len(y), 0.5)
    args = (raw, features, [1, 2, 3, 4], ["a", "b", "c", "d"], y, 0.1)
    folds = fit(*args, decision="readout", groups=groups)
    held = fit(*args, decision="readout", groups=groups, probabilities="sources-held-out")
    assert folds.dev.softening is None and folds.dev.ece_by_source is not None
    m = held.dev.softening
    assert m is not None and 0.1 <= m.slope < 1.0
    # the map fitted on held-out-source predictions makes them better calibrated
    assert held.dev.ece_by_source < folds.dev.ece_by_source
    # monotone, threshold mapped with it: the same rows are flagged
    assert (held.out_of_fold >= held.threshold).tolist() == (
        folds.out_of_fold >= folds.threshold
    ).tolist()
    spread = {"folds": [], "held": []}
    for row in features:
        lp = dict(zip([1, 2, 3, 4], row.tolist(), strict=True))
        p_folds, p_held = folds.readout.probability(lp), held.readout.probability(lp)
        assert (p_folds >= folds.threshold) == (p_held >= held.threshold)
        spread["folds"].append(abs(p_folds - 0.5)), spread["held"].append(abs(p_held - 0.5))
    assert np.mean(spread["held"]) < np.mean(spread["folds"])  # less sure of itself


def test_profiles_without_the_new_figures_keep_their_json_and_digest():
    """Every shipped file reads back to exactly its own JSON: a field a profile lacks (older
    ones have no ``ece_by_source`` or ``softening``) is not added, so its digest holds."""
    files = [f for f in resources.files(SHIPPED_PACKAGE).iterdir() if f.name.endswith(".json")]
    assert files
    for entry in files:
        text = entry.read_text("utf-8")
        loaded = CalibrationProfile.model_validate_json(text)
        assert json.loads(loaded.model_dump_json()) == json.loads(text), entry.name
    fitted = profile(dev=DevFigures(ece=0.1, ece_by_source=0.05, softening=Platt(slope=0.5)))
    again = CalibrationProfile.model_validate_json(fitted.model_dump_json())
    assert again.dev.softening == Platt(slope=0.5) and again.digest == fitted.digest
