"""The review continues the draft's own tokens, so vLLM's prefix cache serves them."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.conscience.frameworks import FrameworkCatalog
from app.conscience.prompts import DraftTokens, review_prompt_ids
from app.settings import ReviewLayout
from tests.support import TINY_NAME, ScriptedEngine

BLOCK = 32  # the CPU engine's default KV block size (app.vllm_engine)
LONG = [
    {
        "role": "user",
        "content": "Tell me, in as much detail as you can, how a sourdough starter is made, "
        "fed, kept alive through a cold winter kitchen, and used to bake a loaf with an open "
        "crumb and a dark crust, and what goes wrong most often for beginners.",
    }
]


def _review_tokens(base_url: str) -> tuple[float, float]:
    """(review prompt tokens, of which served from the prefix cache) so far."""
    text = httpx.get(f"{base_url}/metrics").text
    prompt = cached = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("stage") != "review":
                continue
            if s.name == "conscience_tokens_total" and s.labels.get("kind") == "prompt":
                prompt = s.value
            elif s.name == "conscience_prefix_cached_tokens_total":
                cached = s.value
    return prompt, cached


@pytest.mark.parametrize("layout", ["auto", "framework_first"])
def test_a_base_draft_review_prefills_only_the_question(serve, make_client, layout):
    served = serve(review_layout=layout, mode="flag")
    client = make_client(served.base_url)
    before = _review_tokens(served.base_url)
    answer = client.chat.completions.create(
        model=TINY_NAME,
        messages=LONG,
        max_tokens=48,
        temperature=1.0,
        extra_body={"min_tokens": 48},
    )
    after = _review_tokens(served.base_url)
    prompt, cached = after[0] - before[0], after[1] - before[1]
    report = answer.model_extra["conscience"]
    drafted = answer.usage.prompt_tokens + answer.usage.completion_tokens
    if layout == "auto":
        assert report["review_layout"] == "continuation"
        # every full block of the draft's prompt and answer (less the last, never-fed token)
        assert cached >= (drafted - 1) // BLOCK * BLOCK - BLOCK
        assert prompt - cached < prompt - drafted + 2 * BLOCK
    else:
        assert report["review_layout"] == "framework_first"
        # only the preamble shared by every request can come from the cache: the conversation
        # and the draft, re-encoded as data, are prefilled again
        assert prompt - cached > drafted // 2


def test_sampled_tokens_replace_a_re_encoding_that_differs():
    engine = ScriptedEngine([], [])
    fw = FrameworkCatalog.load(None).get("introspective")
    chat = [{"role": "user", "content": "hi there"}]
    prompt = engine.encode_chat(chat)
    plain = review_prompt_ids(engine, fw, ReviewLayout.continuation, chat, "ok fine", 512)
    # the engine generated other ids for the same text (and an end-of-turn token)
    sampled = DraftTokens(prompt, [901, 902, 0])
    built = review_prompt_ids(engine, fw, ReviewLayout.continuation, chat, "ok fine", 512, sampled)
    rendered = engine.encode_text("ok fine")
    assert built[: len(prompt)] == prompt
    assert built[len(prompt) : len(prompt) + 2] == [901, 902]
    assert built[len(prompt) + 2 :] == plain[len(prompt) + len(rendered) :]
    # a generated special token mid-answer could forge a turn: keep the re-encoded text
    forged = DraftTokens(prompt, [901, 0, 902])
    assert (
        review_prompt_ids(engine, fw, ReviewLayout.continuation, chat, "ok fine", 512, forged)
        == plain
    )
