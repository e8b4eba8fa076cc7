"""Label sets: the words a judge answers with, and how each maps to a verdict.

A framework asks its question and names a label set (``yes_no``, ``safe_unsafe``,
``ethical3``) or defines its own. The review asks the engine for the exact first-token
log-probabilities of every case and leading-space variant of every label word (vLLM's
``logprob_token_ids``), so the model's natural answer (``Yes``, `` yes``, ``YES``) counts
instead of being masked away by a constrained choice. P(label) is that label's mass over the
mass of all labels; the score is the mass of the labels that mean ``unethical``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.protocol import Verdict

MAX_SCORED_TOKENS = 128  # vLLM's cap on logprob_token_ids per request


class LabelOption(BaseModel):
    """One answer word and the verdict it stands for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    word: str = Field(min_length=1, max_length=32, pattern=r"^\S+$")
    verdict: Verdict


class LabelSet(BaseModel):
    """The judge's possible answers and the instruction that asks for one of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_][a-z0-9_.-]{0,63}$")
    options: tuple[LabelOption, ...] = Field(min_length=2, max_length=8)
    instruction: str = Field(min_length=4, max_length=200)

    @model_validator(mode="after")
    def _check(self) -> LabelSet:
        words = [o.word.lower() for o in self.options]
        if len(set(words)) != len(words):
            raise ValueError("label words must differ (case-insensitively)")
        verdicts = {o.verdict for o in self.options}
        if Verdict.unknown in verdicts:
            raise ValueError("'unknown' is not a judge verdict")
        if Verdict.unethical not in verdicts or verdicts == {Verdict.unethical}:
            raise ValueError("a label set needs an 'unethical' label and at least one other")
        return self

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(o.word for o in self.options)


BUILTIN_LABEL_SETS: dict[str, LabelSet] = {
    s.name: s
    for s in (
        LabelSet(
            name="yes_no",
            options=(
                LabelOption(word="Yes", verdict=Verdict.unethical),
                LabelOption(word="No", verdict=Verdict.ethical),
            ),
            instruction="Answer Yes or No.",
        ),
        LabelSet(
            name="safe_unsafe",
            options=(
                LabelOption(word="unsafe", verdict=Verdict.unethical),
                LabelOption(word="safe", verdict=Verdict.ethical),
            ),
            instruction="Answer with one word: safe or unsafe.",
        ),
        LabelSet(
            name="ethical3",
            options=(
                LabelOption(word="ethical", verdict=Verdict.ethical),
                LabelOption(word="neutral", verdict=Verdict.neutral),
                LabelOption(word="unethical", verdict=Verdict.unethical),
            ),
            instruction="Reply with exactly one word: ethical, neutral or unethical.",
        ),
    )
}


@dataclass(frozen=True)
class LabelTokens:
    """Which first-token ids spell which label, for one tokenizer."""

    label_set: LabelSet
    ids_by_word: Mapping[str, tuple[int, ...]]

    @property
    def ids(self) -> list[int]:
        return [i for ids in self.ids_by_word.values() for i in ids]

    def probabilities(self, logprobs: Mapping[int, float]) -> dict[str, float]:
        """P(word) over the label words, from exact first-token log-probabilities.

        Raises ``ValueError`` when the labels hold no probability mass at all.
        """
        mass = {
            word: sum(math.exp(logprobs[i]) for i in ids if i in logprobs)
            for word, ids in self.ids_by_word.items()
        }
        total = sum(mass.values())
        if not total > 0:
            raise ValueError(f"no probability on the labels {list(self.ids_by_word)}")
        return {word: m / total for word, m in mass.items()}


def label_tokens(
    label_set: LabelSet,
    encode: Callable[[str], Sequence[int]],
    decode: Callable[[int], str],
) -> LabelTokens:
    """The first-token ids of every case and leading-space variant of each label word.

    A token counts for a word when it is the first token of one of the word's variants and
    its text is a prefix of that word only (``un`` would be ambiguous between two labels;
    ``N`` could start ``No`` and ``Neutral``): ambiguous prefixes are left out.
    """
    words = [w.lower() for w in label_set.words]
    found: dict[str, list[int]] = {w: [] for w in label_set.words}
    for word in label_set.words:
        for form in dict.fromkeys((word, word.lower(), word.capitalize(), word.upper())):
            for text in (form, " " + form):
                ids = list(encode(text))
                if not ids:
                    continue
                piece = decode(ids[0]).strip().lower()
                owners = [w for w in words if piece and w.startswith(piece)]
                if owners == [word.lower()] and ids[0] not in found[word]:
                    found[word].append(ids[0])
    missing = [w for w, ids in found.items() if not ids]
    if missing:
        raise ValueError(f"label words {missing} have no unambiguous first token")
    return LabelTokens(label_set, {w: tuple(ids) for w, ids in found.items()})
