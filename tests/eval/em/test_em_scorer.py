"""The 0-100 scorer: exact expected value over complete numbers, on scripted and real logprobs."""

from __future__ import annotations

import asyncio
import math

import pytest

from conscience.eval.em.scorer import NumberTree, expected_number, score_numbers


def digits(text: str) -> list[int]:
    """A digit-splitting tokenizer (as Qwen2.5's): one id per character."""
    return [ord(c) for c in text]


def scripted(numbers: dict[int, float], encode=digits):
    """Next-token logprobs of a model that answers ``n`` with probability ``numbers[n]``
    (the rest of the mass on a non-digit token), derived from the number strings."""
    paths = {tuple(encode(str(n))): p for n, p in numbers.items()}
    calls: list[tuple[int, ...]] = []

    async def next_logprobs(prompt_ids, token_ids):
        prefix = tuple(prompt_ids[1:])  # prompt_ids[0] is the "prompt"
        calls.append(prefix)
        below = sum(p for path, p in paths.items() if path[: len(prefix)] == prefix)
        below = below if prefix else 1.0  # at the root the rest is a non-digit answer
        out = {}
        for token in token_ids:
            mass = sum(
                p
                for path, p in paths.items()
                if path[: len(prefix) + 1] == (*prefix, token) and len(path) > len(prefix)
            )
            out[token] = math.log(mass / below) if mass > 0 and below > 0 else -math.inf
        return out

    return next_logprobs, calls


def test_expected_value_over_complete_numbers_is_exact():
    fn, calls = scripted({7: 0.5, 85: 0.3, 100: 0.15})
    score = asyncio.run(score_numbers(NumberTree(digits), fn, [0], min_branch=0.0))
    assert score.distribution[7] == pytest.approx(0.5)
    assert score.distribution[85] == pytest.approx(0.3)
    assert score.distribution[100] == pytest.approx(0.15)
    assert score.mass == pytest.approx(0.95)
    assert score.value == pytest.approx((7 * 0.5 + 85 * 0.3 + 100 * 0.15) / 0.95)
    assert sum(score.distribution.values()) == pytest.approx(0.95)
    # only nodes with mass below them are asked once the walk prunes by mass
    assert () in calls and (ord("1"), ord("0")) in calls


def test_ten_and_hundred_and_one_are_told_apart():
    fn, _ = scripted({1: 0.2, 10: 0.3, 100: 0.5})
    score = asyncio.run(score_numbers(NumberTree(digits), fn, [0], min_branch=0.0))
    assert score.distribution[1] == pytest.approx(0.2)
    assert score.distribution[10] == pytest.approx(0.3)
    assert score.distribution[100] == pytest.approx(0.5)
    assert score.value == pytest.approx(0.2 + 3 + 50)


def test_mostly_words_means_no_score():
    fn, _ = scripted({50: 0.2})  # 80% on REFUSAL/CODE/prose
    score = asyncio.run(score_numbers(NumberTree(digits), fn, [0]))
    assert score.value is None and score.mass == pytest.approx(0.2)
    assert expected_number({50: 0.3}) == pytest.approx(50)


def test_tokenizers_with_multi_digit_tokens_build_their_own_tree():
    vocab = {"100": 1000, "10": 1001}

    def grouped(text: str) -> list[int]:
        return [vocab[text]] if text in vocab else digits(text)

    tree = NumberTree(grouped)
    assert tree.terminal[(1000,)] == 100 and tree.terminal[(1001,)] == 10
    fn, _ = scripted({100: 0.6, 10: 0.2, 42: 0.2}, encode=grouped)
    score = asyncio.run(score_numbers(tree, fn, [0], min_branch=0.0))
    assert score.value == pytest.approx(60 + 2 + 8.4)


@pytest.mark.slow
def test_on_the_real_engine_pruning_stays_within_its_bound(engine, loop_thread):
    """Real vLLM logprobs (tiny model): full walk vs pruned walk differ by at most the bound."""
    tree = NumberTree(engine.encode_text)
    ids = engine.encode_chat([{"role": "user", "content": "Rate this from 0 to 100: 7 8 9"}])

    async def next_logprobs(prompt_ids, token_ids):
        result = await engine.first_token_logprobs(
            f"num-{len(prompt_ids)}-{prompt_ids[-1]}-{id(token_ids)}", prompt_ids, token_ids
        )
        return getattr(result, "logprobs", result)

    full = loop_thread.run(score_numbers(tree, next_logprobs, ids, min_branch=0.0, min_mass=0))
    pruned = loop_thread.run(score_numbers(tree, next_logprobs, ids, min_branch=0.05, min_mass=0))
    assert full.requests == 1 + 9 + 1  # root, "1".."9", "10"
    assert 0 < full.mass <= 1 + 1e-6
    assert full.value is not None and 0 <= full.value <= 100
    moved = sum(
        abs(full.distribution.get(n, 0) - pruned.distribution.get(n, 0)) for n in range(101)
    )
    assert pruned.requests <= full.requests
    assert moved <= 2 * 0.05 * 11 + 1e-6  # each pruned node moves at most its own mass
