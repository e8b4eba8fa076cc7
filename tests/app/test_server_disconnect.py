"""A client that goes away aborts its engine requests (streamed and non-streamed).

Each request asks for 1900 tokens past end-of-sequence (several seconds on the tiny model);
after the client leaves, the engine must be idle with far fewer tokens generated.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import TINY_NAME

MAX_TOKENS = 1900
LONG = {
    "model": TINY_NAME,
    "messages": [{"role": "user", "content": "Tell me a story."}],
    "max_tokens": MAX_TOKENS,
    "ignore_eos": True,
}


def vllm_value(base_url: str, family: str) -> float:
    text = httpx.get(f"{base_url}/metrics").text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
        if not s.name.endswith("_created")
    )


def assert_aborted(base_url: str, tokens_before: float) -> None:
    deadline = time.monotonic() + 20
    time.sleep(0.5)
    while vllm_value(base_url, "vllm:num_requests_running") > 0:
        assert time.monotonic() < deadline, "the engine kept generating"
        time.sleep(0.1)
    generated = vllm_value(base_url, "vllm:generation_tokens") - tokens_before
    assert generated < MAX_TOKENS / 2, f"{generated} tokens: the request ran on"


def test_streaming_disconnect_aborts(server):
    before = vllm_value(server.base_url, "vllm:generation_tokens")
    body = {**LONG, "stream": True, "conscience": {"mode": "off"}}
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get(
                "content"
            ):
                break  # the first generated text: leave mid-stream
    assert_aborted(server.base_url, before)


@pytest.mark.parametrize("mode", ["off", "rewrite"])
def test_non_streamed_disconnect_aborts(server, mode):
    before = vllm_value(server.base_url, "vllm:generation_tokens")
    body = {**LONG, "conscience": {"mode": mode}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=0.5)
    assert_aborted(server.base_url, before)
