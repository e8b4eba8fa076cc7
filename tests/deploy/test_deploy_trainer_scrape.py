"""The trainer's job: Prometheus (the real binary) scrapes a trainer metrics endpoint with our
scrape config and evaluates the trainer alerts on it. No model or server: the endpoint is the
real ``trainer.metrics`` after one published round (see prometheus_run.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.deploy.deploy_helpers import alert_rules, exported_names
from tests.deploy.prometheus_run import (
    TRAINER_JOB,
    TRAINER_PREFIX,
    get,
    query,
    run_prometheus,
    targets_up,
    trainer_exporter,
    trainer_queries,
    used_names,
    wait_for,
    wait_for_data,
)

TRAINER_ALERTS = {"ConscienceTrainerDown", "ConscienceTrainerNotPublishing"}


@pytest.fixture(scope="module")
def trainer() -> Iterator[str]:
    with trainer_exporter() as address:
        yield address


@pytest.fixture(scope="module")
def prometheus(trainer: str, tmp_path_factory) -> Iterator[str]:
    with run_prometheus({TRAINER_JOB: trainer}, tmp_path_factory.mktemp("prometheus")) as url:
        yield url


def _trainer_names() -> set[str]:
    return {name for name in used_names() if name.startswith(TRAINER_PREFIX)}


def test_the_trainer_exports_every_series_the_dashboard_and_alerts_use(trainer: str) -> None:
    assert _trainer_names() >= {
        "conscience_trainer_queue_depth",
        "conscience_trainer_last_publish_timestamp_seconds",
        "conscience_trainer_rounds_total",
    }
    exported = exported_names(httpx.get(f"http://{trainer}/metrics", timeout=10).text)
    assert not _trainer_names() - exported


def test_prometheus_scrapes_the_trainer_as_its_job(prometheus: str, trainer: str) -> None:
    (target,) = wait_for(lambda: targets_up(prometheus, 1), "the trainer target to be up")
    assert target["labels"] == {"job": TRAINER_JOB, "instance": trainer}
    expected = _trainer_names()

    def stored():
        names = set(get(prometheus, "/api/v1/label/__name__/values"))
        return names if expected <= names else None

    wait_for(stored, f"series {sorted(expected)}", timeout=30)


def test_trainer_dashboard_queries_return_data(prometheus: str) -> None:
    queries = set(trainer_queries())
    assert len(queries) >= 3
    wait_for_data(prometheus, queries, "data for the trainer's dashboard queries")


def test_trainer_alerts_evaluate_and_stay_quiet(prometheus: str) -> None:
    wait_for(lambda: targets_up(prometheus, 1), "the trainer target to be up")
    rules = {rule["alert"]: rule for rule in alert_rules() if rule.get("alert") in TRAINER_ALERTS}
    assert set(rules) == TRAINER_ALERTS
    for rule in rules.values():  # a healthy trainer that just published: no sample, no error
        assert query(prometheus, rule["expr"]) == [], rule["alert"]
    # ...and the down alert's selector does see the scraped trainer.
    assert query(prometheus, 'up{job="conscience-trainer"} == 1')

    def evaluated():
        groups = get(prometheus, "/api/v1/rules")["groups"]
        found = [rule for group in groups for rule in group["rules"]]
        return found if found and all(r["lastEvaluation"] > "2000" for r in found) else None

    loaded = {rule["name"]: rule for rule in wait_for(evaluated, "every rule evaluated")}
    for name in TRAINER_ALERTS:
        assert (loaded[name]["health"], loaded[name]["state"]) == ("ok", "inactive"), name
