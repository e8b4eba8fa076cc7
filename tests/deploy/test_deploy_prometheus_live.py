"""The real Prometheus (Debian's binary) scraping a running test server with our scrape config.

Test servers on the session's engine are driven through every event the dashboard and the
alerts watch (rewrites, a review timeout answered fail-open, an error, dropped pairs, a
rejected adapter), so every labelled series exists. Then Prometheus runs with
deploy/prometheus/prometheus.yml (target rewritten to the test port, 1 s intervals) and
alerts.yaml, and its HTTP API must show: the target up, every series the dashboard and the
alerts name, data for every dashboard query, the rules healthy, and the alerts for those
events firing.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.adapter_registry import MANIFEST, BaseModelIdentity, Manifest, VersionEntry
from conscience.ports import free_port
from tests.deploy.deploy_helpers import (
    PROMETHEUS_DIR,
    alert_rules,
    concrete,
    dashboard_targets,
    exported_names,
    load_yaml,
    metric_names,
    require_tool,
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
def prometheus(scraped: str, tmp_path_factory) -> Iterator[str]:
    """Prometheus on a free port with our config and rules; its base URL."""
    binary = require_tool("prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / rule) for rule in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [scraped.removeprefix("http://")]}]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = work / "prometheus.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _get(url, "/-/ready", raw=True), f"Prometheus ready ({log})", process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _get(url: str, path: str, raw: bool = False, **params: str) -> Any:
    response = httpx.get(f"{url}{path}", params=params, timeout=10)
    if raw:
        return response.status_code == 200
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def _wait(check: Callable[[], Any], what: str, process=None, timeout: float = 60) -> Any:
    """Poll ``check`` until it returns something truthy (connection errors count as no)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode} while waiting for {what}")
        try:
            if result := check():
                return result
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def _query(url: str, expr: str) -> list[dict]:
    return _get(url, "/api/v1/query", query=expr)["result"]


def _used_names() -> set[str]:
    """Series the dashboard and the alerts select (recording rules' own outputs left out)."""
    recorded = {rule["record"] for rule in alert_rules() if "record" in rule}
    names = set().union(*(metric_names(concrete(e)) for _, e in dashboard_targets()))
    names |= set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    return names - recorded


def test_the_server_exports_every_series_the_dashboard_and_alerts_use(scraped: str) -> None:
    exported = exported_names(httpx.get(f"{scraped}/metrics", timeout=10).text)
    assert any(name.startswith("vllm:") for name in exported)
    assert not (_used_names() - SYNTHETIC) - exported


def test_prometheus_scrapes_the_server(prometheus: str, scraped: str) -> None:
    def target_up():
        targets = _get(prometheus, "/api/v1/targets")["activeTargets"]  # [] until discovered
        return targets if targets and targets[0]["health"] == "up" else None

    (target,) = _wait(target_up, "the scrape target to be up")
    assert target["labels"] == {"job": "conscience", "instance": scraped.removeprefix("http://")}


def test_every_used_series_is_in_prometheus(prometheus: str) -> None:
    expected = _used_names()

    def stored():
        names = set(_get(prometheus, "/api/v1/label/__name__/values"))
        return names if expected <= names else None

    _wait(stored, f"series {sorted(expected)}", timeout=30)


def test_every_dashboard_query_returns_data(prometheus: str) -> None:
    pending = {(title, concrete(expr)) for title, expr in dashboard_targets()}

    def answered():
        for item in list(pending):
            if _query(prometheus, item[1]):
                pending.discard(item)
        return not pending

    try:
        _wait(answered, "data for every dashboard query", timeout=30)
    except pytest.fail.Exception:
        pytest.fail(f"no data for: {sorted(pending)}")


def test_rules_load_and_the_event_alerts_fire(prometheus: str) -> None:
    def evaluated():
        groups = _get(prometheus, "/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        done = all(rule["lastEvaluation"] > "2000" for rule in rules)
        return groups if rules and done else None

    groups = _wait(evaluated, "every rule evaluated", timeout=30)
    assert {g["name"] for g in groups} == {"conscience", "conscience-recording"}
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(rules) == {r.get("alert") or r["record"] for r in alert_rules()}
    assert {name: r["health"] for name, r in rules.items() if r["health"] != "ok"} == {}

    def firing():
        alerts = _get(prometheus, "/api/v1/alerts")["alerts"]
        names = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
        return alerts if names >= EVENT_ALERTS else None

    alerts = _wait(firing, f"alerts {sorted(EVENT_ALERTS)} firing", timeout=30)
    labels = [a["labels"] for a in alerts]
    assert {"alertname": "ConsciencePairsDropped", "job": "conscience", "reason": "buffer_full",
            "severity": "warning"} in labels  # fmt: skip
    assert {"alertname": "ConscienceAdapterRejected", "job": "conscience",
            "reason": "base_mismatch", "severity": "warning"} in labels  # fmt: skip
    assert "ConscienceServerDown" not in {label["alertname"] for label in labels}
