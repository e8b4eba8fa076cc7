"""Hot-swapping adapters on the real engine: follow, reject, admin API, per-request choice."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from app.adapter_registry import BaseModelIdentity
from tests.app.adapter_helpers import publish_adapter
from tests.support import TINY_NAME

ADMIN = {"Authorization": "Bearer adm1n"}
USER = [{"role": "user", "content": "How do I bake bread?"}]


@pytest.fixture
def swapping(serve, tiny_model_dir, tmp_path):
    root = tmp_path / "adapters"
    served = serve(
        model=str(tiny_model_dir), adapters_dir=root, adapter_poll_s=0.1, admin_key="adm1n"
    )
    return served, root


def admin_status(base_url: str) -> dict:
    return httpx.get(f"{base_url}/admin/adapters", headers=ADMIN).json()


def wait_status(base_url: str, predicate, limit_s: float = 60) -> dict:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status = admin_status(base_url)
        if predicate(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"adapter status never matched: {admin_status(base_url)}")


def chat(base_url: str, model: str = TINY_NAME, **kwargs) -> dict:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0) as client:
        reply = client.chat.completions.create(model=model, messages=USER, max_tokens=4, **kwargs)
    return reply.model_extra["conscience"]


def test_follows_the_manifest_and_reports_the_version(swapping, tiny_model_dir):
    served, root = swapping
    assert chat(served.base_url)["adapter"] is None
    v1 = publish_adapter(root, tiny_model_dir, seed=1)
    wait_status(served.base_url, lambda s: s["current"] == v1)
    assert chat(served.base_url)["adapter"] == v1
    assert chat(served.base_url, model=f"{TINY_NAME}@base")["adapter"] is None
    models = [m["id"] for m in httpx.get(f"{served.base_url}/v1/models").json()["data"]]
    assert f"{TINY_NAME}@{v1}" in models and f"{TINY_NAME}@base" in models
    v2 = publish_adapter(root, tiny_model_dir, seed=2)
    status = wait_status(served.base_url, lambda s: s["current"] == v2)
    assert status["previous"] == v1
    assert chat(served.base_url, model=f"{TINY_NAME}@{v1}")["adapter"] == v1
    missing = httpx.post(
        f"{served.base_url}/v1/chat/completions",
        json={"model": f"{TINY_NAME}@v999999", "messages": USER},
    )
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"


def test_score_differs_between_base_and_adapter(swapping, tiny_model_dir):
    served, root = swapping
    version = publish_adapter(root, tiny_model_dir, seed=3)
    wait_status(served.base_url, lambda s: s["current"] == version)
    body = {"messages": USER, "answers": ["Mix flour and water.", "No."]}
    scored = {}
    for model in (TINY_NAME, f"{TINY_NAME}@base"):
        response = httpx.post(
            f"{served.base_url}/v1/conscience/score", json={**body, "model": model}
        )
        assert response.status_code == 200, response.text
        scored[model] = response.json()
    assert scored[TINY_NAME]["adapter"] == version
    assert scored[f"{TINY_NAME}@base"]["adapter"] is None
    base = [s["logprob"] for s in scored[f"{TINY_NAME}@base"]["scores"]]
    tuned = [s["logprob"] for s in scored[TINY_NAME]["scores"]]
    assert all(lp < 0 for lp in base) and base != tuned


def test_concurrent_scores_with_an_adapter_keep_the_engine_alive(swapping, tiny_model_dir):
    """A prompt-logprob request batched with any other killed vLLM's CPU build with LoRA."""
    import concurrent.futures

    served, root = swapping
    version = publish_adapter(root, tiny_model_dir, seed=7)
    wait_status(served.base_url, lambda s: s["current"] == version)
    body = {"messages": USER, "answers": ["Mix flour and water.", "No.", "Bake it hot."]}

    review = {"messages": USER, "answer": "Mix flour and water, knead and bake."}

    def call(model: str | None) -> int:
        if model is None:  # a review: an ordinary generation step beside the scores
            url = f"{served.base_url}/v1/conscience/review"
            return httpx.post(url, json=review, timeout=120).status_code
        url = f"{served.base_url}/v1/conscience/score"
        return httpx.post(url, json={**body, "model": model}, timeout=120).status_code

    calls = [TINY_NAME, None, f"{TINY_NAME}@base", None] * 3
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        assert list(pool.map(call, calls)) == [200] * len(calls)
    assert chat(served.base_url)["adapter"] == version


def test_swaps_under_concurrent_load_drop_nothing(swapping, tiny_model_dir, make_client):
    served, root = swapping
    failures: list[BaseException] = []
    seen: set[str | None] = set()
    stop = threading.Event()

    def hammer(stream: bool) -> None:
        client = make_client(served.base_url)
        while not stop.is_set():
            try:
                if stream:
                    chunks = list(
                        client.chat.completions.create(
                            model=TINY_NAME, messages=USER, max_tokens=6, stream=True
                        )
                    )
                    seen.add(chunks[-1].model_extra["conscience"]["adapter"])
                else:
                    reply = client.chat.completions.create(
                        model=TINY_NAME, messages=USER, max_tokens=6
                    )
                    seen.add(reply.model_extra["conscience"]["adapter"])
            except Exception as exc:  # every failure is a test failure
                failures.append(exc)

    workers = [threading.Thread(target=hammer, args=(i % 2 == 0,)) for i in range(4)]
    for worker in workers:
        worker.start()
    versions = []
    try:
        for seed in range(3):
            versions.append(publish_adapter(root, tiny_model_dir, seed=10 + seed))
            wait_status(served.base_url, lambda s, v=versions[-1]: s["current"] == v)
            time.sleep(1.0)
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
    assert failures == []
    assert set(versions) <= seen, f"responses reported {seen}"
    assert seen <= {None, *versions}


def test_bad_versions_are_rejected_and_the_old_one_keeps_serving(swapping, tiny_model_dir):
    served, root = swapping
    good = publish_adapter(root, tiny_model_dir, seed=4)
    wait_status(served.base_url, lambda s: s["current"] == good)

    corrupt = publish_adapter(root, tiny_model_dir, seed=5)
    weights = root / corrupt / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    wait_status(served.base_url, lambda s: corrupt in s["rejected"])

    other_base = BaseModelIdentity(name="other", config_hash="f" * 64)
    foreign = publish_adapter(root, tiny_model_dir, seed=6, identity=other_base)
    wait_status(served.base_url, lambda s: foreign in s["rejected"])

    wide = publish_adapter(root, tiny_model_dir, seed=7, rank=32)
    status = wait_status(served.base_url, lambda s: wide in s["rejected"])
    assert "rank" in status["rejected"][wide]
    assert status["current"] == good and chat(served.base_url)["adapter"] == good
    time.sleep(0.5)  # several polls later, nothing was retried
    history = admin_status(served.base_url)["history"]
    assert sum(1 for h in history if h["version"] == wide) == 1


def test_admin_pin_follow_rollback(swapping, tiny_model_dir):
    served, root = swapping
    url = served.base_url
    v1 = publish_adapter(root, tiny_model_dir, seed=8)
    wait_status(url, lambda s: s["current"] == v1)
    v2 = publish_adapter(root, tiny_model_dir, seed=9)
    wait_status(url, lambda s: s["current"] == v2)

    rolled = httpx.post(f"{url}/admin/adapters/rollback", headers=ADMIN).json()
    assert rolled["current"] == v1 and rolled["following"] is False
    v3 = publish_adapter(root, tiny_model_dir, seed=10)
    time.sleep(0.5)
    assert admin_status(url)["current"] == v1, "a pinned server ignores the manifest"
    pinned = httpx.post(f"{url}/admin/adapters/pin", headers=ADMIN, json={"version": v2}).json()
    assert pinned["current"] == v2
    followed = httpx.post(f"{url}/admin/adapters/follow", headers=ADMIN).json()
    assert followed["following"] is True and followed["current"] == v3


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, {"version": "v000001"}, 401),
        ({"Authorization": "Bearer wrong"}, {"version": "v000001"}, 401),
        (ADMIN, {}, 400),
        (ADMIN, {"version": "v000001", "extra": 1}, 400),
        (ADMIN, {"version": "v424242"}, 404),
    ],
)
def test_admin_rejects_bad_keys_and_bodies(swapping, headers, body, status):
    served, _ = swapping
    response = httpx.post(f"{served.base_url}/admin/adapters/pin", headers=headers, json=body)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_admin_is_disabled_without_a_key(server):
    response = httpx.get(f"{server.base_url}/admin/adapters", headers=ADMIN)
    assert response.status_code == 403
