"""The real Prometheus (Debian's binary) scraping a running test server with our scrape config.

Test servers on the session's engine are driven through every event the dashboard and the
alerts watch (rewrites, a review timeout answered fail-open, an error, dropped pairs, a
rejected adapter), so every labelled series exists. Then Prometheus runs with
deploy/prometheus/prometheus.yml (targets rewritten to the test server and a trainer metrics
endpoint, 1 s intervals; see prometheus_run.py) and alerts.yaml, and its HTTP API must show:
both targets up, every series the dashboard and the alerts name, data for every dashboard
query, the rules healthy, and the alerts for those events firing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.adapter_registry import MANIFEST, BaseModelIdentity, Manifest, VersionEntry
from tests.deploy.deploy_helpers import alert_rules, concrete, dashboard_targets, exported_names
from tests.deploy.prometheus_run import (
    TRAINER_JOB,
    TRAINER_PREFIX,
    get,
    run_prometheus,
    targets_up,
    trainer_exporter,
    used_names,
    wait_for,
    wait_for_data,
)
from tests.support import TINY_NAME

EVENT_ALERTS = {"ConscienceFailOpen", "ConscienceAdapterRejected", "ConsciencePairsDropped"}
SYNTHETIC = {"up"}  # written by Prometheus itself, not exported by the server


def _chat(base_url: str, **extra: Any) -> httpx.Response:
    body = {
        "model": TINY_NAME,
        "messages": [{"role": "user", "content": "Hello?"}],
        "max_tokens": 6,
    }
    return httpx.post(f"{base_url}/v1/chat/completions", json=body | extra, timeout=120)


def _write_foreign_adapter(root: Path) -> None:
    """A registry whose current version was trained on another base: the server rejects it."""
    other = BaseModelIdentity(name="another-model", config_hash="0" * 64)
    entry = VersionEntry(version="v000001", parent=None, created_at=time.time(), base_model=other)
    root.mkdir(parents=True)
    manifest = Manifest(current="v000001", base_model=other, versions=[entry])
    (root / MANIFEST).write_text(manifest.model_dump_json())


@pytest.fixture(scope="module")
def scraped(serve, flagging_server, tiny_model_dir: Path, tmp_path_factory) -> str:
    """The base URL of the server Prometheus scrapes, after every watched event happened."""
    base = flagging_server.base_url
    assert _chat(base).status_code == 200  # draft, review, rewrite, a queued pair
    assert _chat(base, stream=True).status_code == 200
    assert _chat(base, model="no-such-model").status_code == 404  # a counted error
    timing_out = serve(review_timeout_s=1e-6)  # every review times out: fail-open
    assert _chat(timing_out.base_url).json()["conscience"]["review_error"].startswith("timeout")
    dropping = serve(queue="redis://127.0.0.1:1/0", queue_buffer=1, flag_threshold=0.0)
    for _ in range(2):  # the queue is unreachable: one pair waits, the next is dropped
        assert _chat(dropping.base_url).status_code == 200
    dropping.state.writer.close(timeout=0.1)  # and the waiting one is dropped at shutdown
    adapters = tmp_path_factory.mktemp("registry") / "adapters"
    _write_foreign_adapter(adapters)
    rejecting = serve(model=str(tiny_model_dir), adapters_dir=adapters)
    assert "v000001" in rejecting.state.adapters.rejected
    return base


@pytest.fixture(scope="module")
def trainer() -> Iterator[str]:
    """``host:port`` of a trainer metrics endpoint (the trainer's job)."""
    with trainer_exporter() as address:
        yield address


@pytest.fixture(scope="module")
def prometheus(scraped: str, trainer: str, tmp_path_factory) -> Iterator[str]:
    """Prometheus on a free port with our config and rules; its base URL."""
    targets = {"conscience": scraped.removeprefix("http://"), TRAINER_JOB: trainer}
    with run_prometheus(targets, tmp_path_factory.mktemp("prometheus")) as url:
        yield url


def test_the_server_exports_every_series_the_dashboard_and_alerts_use(scraped: str) -> None:
    """The server's share; the trainer's (conscience_trainer_*) is checked in
    test_deploy_trainer_scrape.py."""
    exported = exported_names(httpx.get(f"{scraped}/metrics", timeout=10).text)
    assert any(name.startswith("vllm:") for name in exported)
    server_names = {name for name in used_names() if not name.startswith(TRAINER_PREFIX)}
    assert not (server_names - SYNTHETIC) - exported


def test_prometheus_scrapes_the_server(prometheus: str, scraped: str, trainer: str) -> None:
    targets = wait_for(lambda: targets_up(prometheus, 2), "both scrape targets to be up")
    assert sorted((t["labels"]["job"], t["labels"]["instance"]) for t in targets) == [
        ("conscience", scraped.removeprefix("http://")),
        (TRAINER_JOB, trainer),
    ]


def test_every_used_series_is_in_prometheus(prometheus: str) -> None:
    expected = used_names()

    def stored():
        names = set(get(prometheus, "/api/v1/label/__name__/values"))
        return names if expected <= names else None

    wait_for(stored, f"series {sorted(expected)}", timeout=30)


def test_every_dashboard_query_returns_data(prometheus: str) -> None:
    queries = {(title, concrete(expr)) for title, expr in dashboard_targets()}
    wait_for_data(prometheus, queries, "data for every dashboard query")


def test_rules_load_and_the_event_alerts_fire(prometheus: str) -> None:
    def evaluated():
        groups = get(prometheus, "/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        done = all(rule["lastEvaluation"] > "2000" for rule in rules)
        return groups if rules and done else None

    groups = wait_for(evaluated, "every rule evaluated", timeout=30)
    assert {g["name"] for g in groups} == {"conscience", "conscience-recording"}
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {r.get("alert") or r["record"] for r in alert_rules()}
    assert {name: r["health"] for name, r in rules.items() if r["health"] != "ok"} == {}

    def firing():
        alerts = get(prometheus, "/api/v1/alerts")["alerts"]
        names = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
        return alerts if names >= EVENT_ALERTS else None

    alerts = wait_for(firing, f"alerts {sorted(EVENT_ALERTS)} firing", timeout=30)
    labels = [a["labels"] for a in alerts]
    assert {"alertname": "ConsciencePairsDropped", "job": "conscience", "reason": "buffer_full",
            "severity": "warning"} in labels  # fmt: skip
    assert {"alertname": "ConscienceAdapterRejected", "job": "conscience",
            "reason": "base_mismatch", "severity": "warning"} in labels  # fmt: skip
    names = {label["alertname"] for label in labels}
    assert not {"ConscienceServerDown", "ConscienceTrainerDown"} & names
