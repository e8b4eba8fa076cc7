"""Bad input, auth and policy refusals: OpenAI error bodies with the right 4xx, never a 500."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support import TINY_NAME

USER = [{"role": "user", "content": "hi"}]


def post(server, body, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.base_url}/v1/chat/completions", timeout=60, **kwargs, json=body)


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": TINY_NAME, "messages": []}, "messages"),
        ({"model": TINY_NAME, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        (
            {"model": TINY_NAME, "messages": [{"role": "user", "content": 5}]},
            "messages.0.content.str",
        ),
        ({"model": TINY_NAME, "messages": [{"role": "user", "content": "  "}]}, None),
        ({"model": TINY_NAME, "messages": USER, "temperature": 3}, "temperature"),
        ({"model": TINY_NAME, "messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"model": TINY_NAME, "messages": USER, "max_tokens": "many"}, "max_tokens"),
        ({"model": TINY_NAME, "messages": USER, "top_p": 0}, "top_p"),
        ({"model": TINY_NAME, "messages": USER, "n": 2}, "n"),
        ({"model": TINY_NAME, "messages": USER, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": TINY_NAME, "messages": USER, "conscience": {"mode": "loud"}}, "conscience.mode"),
        ({"messages": USER}, "model"),
    ],
)
def test_invalid_bodies_are_400(server, body, param):
    error = assert_error(post(server, body), 400, param)
    assert error["type"] == "invalid_request_error"


def test_malformed_json_is_400(server):
    response = httpx.post(
        f"{server.base_url}/v1/chat/completions",
        content=b'{"model": "tiny", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert "JSON" in assert_error(response, 400)["message"]


def test_unknown_framework_lists_available(server):
    body = {"model": TINY_NAME, "messages": USER, "conscience": {"framework": "nope"}}
    error = assert_error(post(server, body), 400, "conscience.framework")
    for name in ("three_laws", "four_laws", "wwjd", "human_rights", "introspective"):
        assert name in error["message"]


def test_unknown_model_is_404(server):
    error = assert_error(post(server, {"model": "gpt-9", "messages": USER}), 404, "model")
    assert error["code"] == "model_not_found"


def test_prompt_over_context_is_400(server):
    long_text = "bread " * 5000
    body = {"model": TINY_NAME, "messages": [{"role": "user", "content": long_text}]}
    error = assert_error(post(server, body), 400)
    assert error["code"] == "context_length_exceeded"


def test_completion_over_context_is_400(server):
    body = {"model": TINY_NAME, "messages": USER, "max_tokens": 100_000}
    assert assert_error(post(server, body), 400, "max_tokens")["code"] == "context_length_exceeded"


def test_oversized_body_is_413(serve):
    small = serve(max_body_bytes=2048)
    body = {"model": TINY_NAME, "messages": [{"role": "user", "content": "x" * 4096}]}
    assert assert_error(post(small, body), 413)["code"] == "payload_too_large"


def test_unknown_path_is_openai_shaped_404(server):
    assert_error(httpx.get(f"{server.base_url}/v1/nothing"), 404)


def test_api_keys_are_enforced(serve, make_client):
    secured = serve(api_keys=["s3cret"])
    assert_error(post(secured, {"model": TINY_NAME, "messages": USER}), 401)
    wrong = post(
        secured, {"model": TINY_NAME, "messages": USER}, headers={"Authorization": "Bearer nope"}
    )
    assert assert_error(wrong, 401)["type"] == "authentication_error"
    good = make_client(secured.base_url, api_key="s3cret")
    assert good.chat.completions.create(model=TINY_NAME, messages=USER, max_tokens=2).choices
    bad = make_client(secured.base_url, api_key="nope")
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert httpx.get(f"{secured.base_url}/health").status_code == 200


def test_forbidden_mode_downgrade_is_403(serve):
    strict = serve(allowed_modes=["flag", "rewrite"])
    body = {"model": TINY_NAME, "messages": USER, "conscience": {"mode": "off"}}
    error = assert_error(post(strict, body), 403, "conscience.mode")
    assert error["code"] == "mode_not_allowed"


def test_return_draft_can_be_forbidden(serve):
    private = serve(allow_return_draft=False)
    body = {"model": TINY_NAME, "messages": USER, "conscience": {"return_draft": True}}
    assert_error(post(private, body), 403, "conscience.return_draft")


def test_engine_failure_is_503(tmp_path):
    """Engine failure mid-draft: a 503 with the OpenAI body (scripted engine, real app)."""
    from fastapi.testclient import TestClient

    from app.errors import EngineUnavailable
    from app.server import create_app
    from app.settings import Settings
    from tests.support import ScriptedEngine

    class BrokenEngine(ScriptedEngine):
        async def stream(self, request_id, prompt_ids, sampling, adapter):
            raise EngineUnavailable("The inference engine failed: boom")
            yield  # pragma: no cover - makes this an async generator

    settings = Settings(queue=f"sqlite:///{tmp_path / 'q.db'}", served_model_name="scripted")
    with TestClient(create_app(settings, engine=BrokenEngine([], []))) as http:
        response = http.post("/v1/chat/completions", json={"model": "scripted", "messages": USER})
    assert_error(response, 503)
    assert response.json()["error"]["type"] == "service_unavailable"
