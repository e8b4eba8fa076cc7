"""Chat completions through the real server and the real vLLM engine, via the openai client."""

from __future__ import annotations

import httpx
import pytest

from tests.support import TINY_NAME

HELLO = [{"role": "user", "content": "How do I bake bread?"}]


def test_non_streamed_chat_has_answer_usage_and_conscience(client, server):
    raw = client.chat.completions.with_raw_response.create(
        model=TINY_NAME, messages=HELLO, max_tokens=8, temperature=0
    )
    completion = raw.parse()
    assert raw.headers["x-conscience-verdict"] in {"ethical", "neutral", "unethical"}
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in {"stop", "length"}
    usage = completion.usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    report = completion.model_extra["conscience"]
    assert report["verdict"] == raw.headers["x-conscience-verdict"]
    assert 0.0 <= report["score"] <= 1.0
    assert report["framework"] == "introspective" and report["framework_version"] == "2"
    assert report["action"] in {"passed", "rewritten"}
    assert report["latency_ms"]["review"] > 0 and report["latency_ms"]["draft"] > 0
    assert "draft" not in report or report["draft"] is None


def test_seeded_greedy_answers_repeat(client):
    kwargs = dict(
        model=TINY_NAME,
        messages=HELLO,
        max_tokens=6,
        temperature=0.8,
        seed=7,
        extra_body={"conscience": {"mode": "off"}},
    )
    first = client.chat.completions.create(**kwargs).choices[0].message.content
    second = client.chat.completions.create(**kwargs).choices[0].message.content
    assert first == second


def test_concurrent_seeded_sampling_with_long_prompts_keeps_the_engine_alive(
    client, make_client, server
):
    """Seeded sampling whose prefill vLLM's CPU build would split over steps killed the engine
    ("CPU Generator does not use offset"); the engine now prefills prompts whole."""
    import concurrent.futures

    long_prompt = " ".join(f"word{i}" for i in range(150))  # ~1,150 tokens; 8 exceed a step

    def ask(seed: int) -> str:
        c = make_client(server.base_url)
        reply = c.chat.completions.create(
            model=TINY_NAME,
            messages=[{"role": "user", "content": f"{seed} {long_prompt}"}],
            max_tokens=4,
            temperature=1.0,
            seed=seed,
            extra_body={"conscience": {"mode": "off"}},
        )
        return reply.choices[0].finish_reason

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        reasons = list(pool.map(ask, range(8)))
    assert all(r in {"stop", "length"} for r in reasons)
    again = client.chat.completions.create(
        model=TINY_NAME, messages=HELLO, max_tokens=2, temperature=0
    )
    assert again.choices[0].finish_reason in {"stop", "length"}


def test_streamed_answer_equals_non_streamed_after_review(flagging_server, make_client):
    client = make_client(flagging_server.base_url)
    kwargs = dict(
        model=TINY_NAME,
        messages=HELLO,
        max_tokens=8,
        temperature=0,
        extra_body={"conscience": {"return_draft": True}},
    )
    whole = client.chat.completions.create(**kwargs)
    chunks = list(
        client.chat.completions.create(
            stream=True, stream_options={"include_usage": True}, **kwargs
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c for c in chunks if c.model_extra.get("conscience")]
    assert finals, "the conscience object must arrive in the final chunk"
    report = finals[-1].model_extra["conscience"]
    assert report["action"] == "rewritten" and report["verdict"] == "unethical"
    assert report["draft"] == whole.model_extra["conscience"]["draft"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_mode_off_streams_live_and_is_not_reviewed(client):
    stream = client.chat.completions.create(
        model=TINY_NAME,
        messages=HELLO,
        max_tokens=6,
        stream=True,
        extra_body={"conscience": {"mode": "off"}},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
    report = chunks[-1].model_extra["conscience"]
    assert report["mode"] == "off" and report["verdict"] == "unknown"
    assert report["latency_ms"]["review"] == 0


def test_rewrite_replaces_flagged_draft_and_queues_the_pair(flagging_server, make_client):
    client = make_client(flagging_server.base_url)
    completion = client.chat.completions.create(
        model=TINY_NAME,
        messages=HELLO,
        max_tokens=8,
        temperature=1.0,  # greedy, the tiny model writes the same 8 tokens after any prompt,
        seed=7,  # and a rewrite that repeats its draft makes no pair
        extra_body={"conscience": {"framework": "three_laws", "return_draft": True}},
    )
    report = completion.model_extra["conscience"]
    assert report["verdict"] == "unethical" and report["action"] == "rewritten"
    assert report["framework"] == "three_laws"
    assert report["latency_ms"]["rewrite"] > 0
    writer = flagging_server.state.writer
    assert writer.flush(10)
    from app.queue import open_queue

    queue = open_queue(flagging_server.settings.queue)
    try:
        records = [r for r in queue.peek(100) if r.framework == "three_laws"]
    finally:
        queue.close()
    assert records, "a rewritten pair must reach the queue"
    record = records[-1]
    assert record.rejected[0].content == report["draft"]
    assert record.chosen[0].content == completion.choices[0].message.content
    assert record.prompt[0].content == HELLO[0]["content"]


def test_flag_mode_annotates_without_changing_the_answer(flagging_server, make_client):
    client = make_client(flagging_server.base_url)
    completion = client.chat.completions.create(
        model=TINY_NAME,
        messages=HELLO,
        max_tokens=8,
        temperature=0,
        extra_body={"conscience": {"mode": "flag", "return_draft": True}},
    )
    report = completion.model_extra["conscience"]
    assert report["action"] == "flagged"
    assert completion.choices[0].message.content == report["draft"]


def test_models_lists_the_served_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == [TINY_NAME, f"{TINY_NAME}@base"]


def test_health_and_ready(server):
    assert httpx.get(f"{server.base_url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.base_url}/ready", timeout=60).json() == {"status": "ready"}


def test_metrics_parse_and_count_stages(client, server):
    from prometheus_client.parser import text_string_to_metric_families

    client.chat.completions.create(model=TINY_NAME, messages=HELLO, max_tokens=4)
    text = httpx.get(f"{server.base_url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    stages = {s.labels.get("stage") for s in families["conscience_stage_latency_seconds"].samples}
    assert {"draft", "review"} <= stages
    assert "conscience_verdicts" in families
    assert any(name.startswith("vllm:") for name in families), "vLLM's own series are exported"


@pytest.mark.parametrize("layout", ["framework_first", "continuation"])
def test_both_review_layouts_work_on_the_engine(serve, layout, make_client):
    served = serve(review_layout=layout)
    client = make_client(served.base_url)
    report = client.chat.completions.create(
        model=TINY_NAME, messages=HELLO, max_tokens=4
    ).model_extra["conscience"]
    assert report["verdict"] in {"ethical", "neutral", "unethical"}


def test_review_endpoint_judges_a_given_answer(server):
    body = {"messages": HELLO, "answer": "Mix flour, water and yeast.", "framework": "wwjd"}
    response = httpx.post(f"{server.base_url}/v1/conscience/review", json=body, timeout=60)
    assert response.status_code == 200, response.text
    review = response.json()
    assert review["verdict"] in {"ethical", "neutral", "unethical"}
    assert sum(review["probabilities"].values()) == pytest.approx(1.0)
    # introspective asks yes/no; with no profile for the tiny model the score is P("Yes")
    assert set(review["probabilities"]) == {"Yes", "No"} and review["calibration"] is None
    assert review["score"] == pytest.approx(review["probabilities"]["Yes"])
    assert review["raw_score"] == review["score"]
    assert review["framework"] == "wwjd" and review["review_layout"] == "continuation"  # auto
    bad = httpx.post(f"{server.base_url}/v1/conscience/review", json={"messages": HELLO})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "answer"


def test_pairs_are_redacted_before_queueing_when_asked(serve, make_client):
    private = serve(flag_threshold=0.0, redact_pii=True)
    client = make_client(private.base_url)
    secret = "Write to jane.doe@example.com or call +1 415 555 0100 about bread."
    client.chat.completions.create(
        model=TINY_NAME, messages=[{"role": "user", "content": secret}], max_tokens=4
    )
    assert private.state.writer.flush(10)
    from app.queue import open_queue

    with open_queue(private.settings.queue) as queue:
        (record,) = queue.peek(10)
    text = record.prompt[0].content
    assert "jane.doe@example.com" not in text and "555 0100" not in text
    assert "bread" in text
