"""The real Prometheus binary and a trainer metrics endpoint, for the tests that scrape.

``run_prometheus`` starts Prometheus on a free port with deploy/prometheus/prometheus.yml and
alerts.yaml, 1 s intervals, each job's target rewritten (jobs not named are left out).
``trainer_exporter`` starts a process serving the real ``trainer.metrics`` on a free port after
recording one published round, as ``conscience train --metrics-port`` does after its first round
(the real trainer is scraped in tests/trainer/test_trainer_metrics.py; this keeps the deploy
tests free of a model).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conscience.ports import free_port
from tests.deploy.deploy_helpers import (
    PROMETHEUS_DIR,
    ROOT,
    alert_rules,
    concrete,
    dashboard_targets,
    load_yaml,
    metric_names,
    require_tool,
)

TRAINER_JOB = "conscience-trainer"
TRAINER_PREFIX = "conscience_trainer_"

_EXPORTER = """
import sys, time
from trainer import metrics
server = metrics.serve(0, "127.0.0.1")
metrics.QUEUE_DEPTH.set(20)
metrics.round_counts({"pairs_trained": 14, "pairs_heldout": 2, "pairs_replay": 3})
metrics.published("v000003", {"loss": 0.61, "reward_accuracy": 0.75, "seconds": 42.0}, time.time())
print(server.server_port, flush=True)
sys.stdin.read()  # serve until the test closes stdin
"""


def get(url: str, path: str, raw: bool = False, **params: str) -> Any:
    """``data`` of a Prometheus API answer (``raw``: whether the path answers 200)."""
    response = httpx.get(f"{url}{path}", params=params, timeout=10)
    if raw:
        return response.status_code == 200
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def wait_for(check: Callable[[], Any], what: str, process=None, timeout: float = 60) -> Any:
    """Poll ``check`` until it returns something truthy (connection errors count as no)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"{process.args[0]} exited with {process.returncode} waiting for {what}")
        try:
            if result := check():
                return result
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def query(url: str, expr: str) -> list[dict]:
    return get(url, "/api/v1/query", query=expr)["result"]


def used_names() -> set[str]:
    """Series the dashboard and the alerts select (recording rules' own outputs left out)."""
    recorded = {rule["record"] for rule in alert_rules() if "record" in rule}
    names = set().union(*(metric_names(concrete(e)) for _, e in dashboard_targets()))
    names |= set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    return names - recorded


def trainer_queries() -> list[tuple[str, str]]:
    """(panel title, concrete query) of the dashboard queries on the trainer's series only."""
    found = []
    for title, expr in dashboard_targets():
        names = metric_names(concrete(expr))
        if names and all(name.startswith(TRAINER_PREFIX) for name in names):
            found.append((title, concrete(expr)))
    return found


@contextmanager
def trainer_exporter() -> Iterator[str]:
    """``host:port`` of a process serving trainer.metrics with one published round."""
    process = subprocess.Popen(
        [sys.executable, "-c", _EXPORTER],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"trainer exporter exited with {process.wait(10)}"
        yield f"127.0.0.1:{port}"
    finally:
        process.stdin.close()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@contextmanager
def run_prometheus(targets: dict[str, str], work: Path) -> Iterator[str]:
    """Prometheus with our config and rules scraping ``targets`` (job name -> host:port); its
    base URL. Jobs of prometheus.yml not in ``targets`` are left out."""
    binary = require_tool("prometheus")
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / rule) for rule in config["rule_files"]]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] in targets]
    assert {job["job_name"] for job in jobs} == set(targets), "a job prometheus.yml lacks"
    for job in jobs:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    config["scrape_configs"] = jobs
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
        wait_for(lambda: get(url, "/-/ready", raw=True), f"Prometheus ready ({log})", process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def targets_up(url: str, count: int) -> list[dict] | None:
    """Prometheus's active targets once there are ``count`` and all are up."""
    targets = get(url, "/api/v1/targets")["activeTargets"]  # [] until discovered
    if len(targets) == count and all(t["health"] == "up" for t in targets):
        return targets
    return None


def wait_for_data(prometheus: str, queries: set[tuple[str, str]], what: str) -> None:
    """Wait until each ``(title, expr)`` query returns data; fail naming those that never do."""
    pending = set(queries)

    def answered():
        for item in list(pending):
            if query(prometheus, item[1]):
                pending.discard(item)
        return not pending

    try:
        wait_for(answered, what, timeout=30)
    except pytest.fail.Exception:
        pytest.fail(f"no data for: {sorted(pending)}")
