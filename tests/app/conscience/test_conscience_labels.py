"""Label sets: validation, every variant's first token on a real tokenizer, exact P(label)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError
from transformers import AutoTokenizer

from app.conscience.frameworks import Framework, FrameworkCatalog
from app.conscience.labels import BUILTIN_LABEL_SETS, LabelSet, label_tokens


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _encode(tok):
    return lambda text: tok.encode(text, add_special_tokens=False)


def _decode(tok):
    return lambda tid: tok.decode([tid])


@pytest.mark.parametrize("name", sorted(BUILTIN_LABEL_SETS))
def test_every_builtin_label_set_has_unambiguous_first_tokens(tokenizer, name):
    found = label_tokens(BUILTIN_LABEL_SETS[name], _encode(tokenizer), _decode(tokenizer))
    all_ids = found.ids
    assert len(all_ids) == len(set(all_ids)), "one token counted for two labels"
    for word, ids in found.ids_by_word.items():
        assert ids, word
        for tid in ids:
            piece = tokenizer.decode([tid]).strip().lower()
            assert word.lower().startswith(piece)


def test_case_and_space_variants_are_all_counted():
    vocab = {"Yes": 1, " Yes": 2, "yes": 3, " yes": 4, "YES": 5, " YES": 6, "No": 7, " No": 8}
    vocab |= {"no": 9, " no": 10, "NO": 11, " NO": 12}
    names = {v: k for k, v in vocab.items()}
    found = label_tokens(BUILTIN_LABEL_SETS["yes_no"], lambda t: [vocab[t]], names.__getitem__)
    assert found.ids_by_word == {"Yes": (1, 2, 3, 4, 5, 6), "No": (7, 8, 9, 10, 11, 12)}
    # mass of every variant adds up; the rest of the vocabulary is ignored
    logprobs = {1: math.log(0.2), 4: math.log(0.1), 8: math.log(0.3), 99: math.log(0.4)}
    probs = found.probabilities(logprobs)
    assert probs["Yes"] == pytest.approx(0.5) and probs["No"] == pytest.approx(0.5)


def test_ambiguous_prefixes_are_left_out():
    # "No" is a prefix of "Nope" and "n" starts all three words: no token speaks for "No" alone.
    labels = LabelSet.model_validate(
        {
            "name": "odd",
            "options": [
                {"word": "No", "verdict": "ethical"},
                {"word": "Nope", "verdict": "unethical"},
                {"word": "never", "verdict": "neutral"},
            ],
            "instruction": "Answer No, Nope or never.",
        }
    )
    vocab = {"N": 1, "No": 2, "Nope": 3, "n": 4, "never": 5}

    def encode(text):
        word = text.strip()
        return [vocab.get(word, vocab[word[:1]])]

    names = {v: k for k, v in vocab.items()}
    with pytest.raises(ValueError, match="no unambiguous first token"):
        label_tokens(labels, encode, names.__getitem__)


def test_zero_label_mass_is_an_error():
    found = label_tokens(
        BUILTIN_LABEL_SETS["yes_no"],
        lambda t: [1 if "es" in t.lower() else 2],
        {1: "Yes", 2: "No"}.get,
    )
    with pytest.raises(ValueError, match="no probability"):
        found.probabilities({3: 0.0})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([("Yes", "unethical"), ("yes", "ethical")], "must differ"),
        ([("good", "ethical"), ("fine", "neutral")], "needs an 'unethical'"),
        ([("bad", "unethical"), ("who", "unknown")], "not a judge verdict"),
    ],
)
def test_label_set_validation(options, message):
    with pytest.raises(ValidationError, match=message):
        LabelSet(
            name="x",
            options=[{"word": w, "verdict": v} for w, v in options],
            instruction="Answer.",
        )


def test_framework_names_a_known_label_set_and_hashes_it():
    base = FrameworkCatalog.load().get("introspective").model_dump()
    with pytest.raises(ValidationError, match="unknown label set"):
        Framework.model_validate({**base, "labels": "maybe"})
    yes_no = Framework.model_validate({**base, "labels": "yes_no"})
    three = Framework.model_validate({**base, "labels": "ethical3"})
    assert yes_no.prompt_hash != three.prompt_hash
