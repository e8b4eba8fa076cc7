"""From the judge's first-token log-probabilities to a verdict and a score.

One ``Judge`` per framework and layout knows which token ids to ask the engine for (every
variant of its label words, plus a profile's read-out tokens) and turns their exact
log-probabilities into a ``Judgement``: P(label) per label word, the raw score (mass of the
labels meaning ``unethical``), the profile's calibrated question score and read-out score,
and the verdict under the threshold in force.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from app.conscience.calibration import CalibrationError, CalibrationProfile, ProfileBook
from app.conscience.frameworks import Framework
from app.conscience.labels import MAX_SCORED_TOKENS, LabelTokens, label_tokens
from app.conscience.prompts import review_prompt_hash
from app.protocol import Verdict
from app.settings import ReviewLayout


@dataclass(frozen=True)
class Judgement:
    """The judge's decision on one answer."""

    verdict: Verdict
    score: float
    raw_score: float
    question_score: float
    readout_score: float | None
    probabilities: dict[str, float]
    profile: str | None


class Judge:
    """Scores one framework's reviews in one layout, under an optional calibration profile."""

    def __init__(
        self,
        framework: Framework,
        layout: ReviewLayout,
        encode: Callable[[str], Sequence[int]],
        decode: Callable[[int], str],
        profile: CalibrationProfile | None = None,
    ):
        self.framework = framework
        self.layout = layout
        self.prompt_hash = review_prompt_hash(framework, layout)
        self.labels: LabelTokens = label_tokens(framework.label_set, encode, decode)
        self.profile = profile
        ids = self.labels.ids
        if profile is not None and profile.readout is not None:
            readout = profile.readout
            seen = [decode(t) for t in readout.token_ids]
            if seen != readout.tokens:
                raise CalibrationError(
                    f"calibration profile {profile.name!r}: its read-out tokens do not match "
                    "this model's tokenizer"
                )
            ids = list(dict.fromkeys([*ids, *readout.token_ids]))
        if len(ids) > MAX_SCORED_TOKENS:
            raise CalibrationError(
                f"framework {framework.name!r} asks for {len(ids)} token log-probabilities; "
                f"the engine returns at most {MAX_SCORED_TOKENS}"
            )
        self.token_ids: list[int] = ids

    def judge(self, logprobs: Mapping[int, float], threshold: float | None) -> Judgement:
        """The judgement; ``threshold`` (when given) overrides the profile's."""
        probabilities = self.labels.probabilities(logprobs)
        options = self.labels.label_set.options
        raw = sum(probabilities[o.word] for o in options if o.verdict is Verdict.unethical)
        question, readout, profile_id = raw, None, None
        if self.profile is not None:
            profile_id = self.profile.id
            question = self.profile.question.apply(raw)
            if self.profile.readout is not None:
                readout = self.profile.readout.probability(logprobs)
            if threshold is None:
                threshold = self.profile.threshold
        score = readout if self.profile and self.profile.decision == "readout" else question
        assert score is not None
        if threshold is not None:
            if score >= threshold:
                verdict = Verdict.unethical
            else:
                rest = [o for o in options if o.verdict is not Verdict.unethical]
                verdict = max(rest, key=lambda o: probabilities[o.word]).verdict
        else:
            verdict = max(options, key=lambda o: probabilities[o.word]).verdict
        return Judgement(verdict, score, raw, question, readout, probabilities, profile_id)


class JudgeBook:
    """A ready ``Judge`` for every framework of a catalog and every concrete layout the
    server's layout setting uses, built once at start-up.

    Under ``auto``, a review of a base draft continues the draft unless only the
    ``framework_first`` layout has a calibration profile for that framework: a calibrated
    verdict is worth more than the cache reuse.
    """

    def __init__(
        self,
        frameworks: Sequence[Framework],
        layout: ReviewLayout,
        encode: Callable[[str], Sequence[int]],
        decode: Callable[[int], str],
        profiles: ProfileBook,
    ):
        self.layout = layout
        layouts = {layout.for_draft(False), layout.for_draft(True)}
        self._judges: dict[tuple[str, ReviewLayout], Judge] = {}
        for fw in frameworks:
            for lay in layouts:
                profile = profiles.for_prompt(review_prompt_hash(fw, lay))
                self._judges[fw.name, lay] = Judge(fw, lay, encode, decode, profile)

    def pick(self, framework: Framework, adapter_drafted: bool) -> Judge:
        """The judge of one review (``adapter_drafted``: the answer came from an adapter)."""
        judge = self._judges[framework.name, self.layout.for_draft(adapter_drafted)]
        if self.layout is ReviewLayout.auto and judge.profile is None:
            first = self._judges[framework.name, ReviewLayout.framework_first]
            return first if first.profile is not None else judge
        return judge
