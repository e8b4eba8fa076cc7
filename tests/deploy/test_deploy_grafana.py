"""The Grafana dashboard and its provisioning, checked structurally (Grafana cannot run here)."""

from __future__ import annotations

from tests.deploy.deploy_helpers import (
    DEPLOY,
    concrete,
    dashboard,
    dashboard_targets,
    load_yaml,
    metric_names,
)

GRAFANA = DEPLOY / "grafana"

# What the issue asks the dashboard to show, as the series that carry it.
REQUIRED_SERIES = {
    "request rate": "conscience_request_latency_seconds_count",
    "stage latency": "conscience_stage_latency_seconds_bucket",
    "end-to-end latency": "conscience_request_latency_seconds_bucket",
    "verdicts and flag rate": "conscience_verdicts_total",
    "review failures": "conscience_review_failures_total",
    "fail-open decisions": "conscience_failure_decisions_total",
    "queue depth": "conscience_queue_depth",
    "queue lag / oldest age": "conscience_queue_lag_seconds",
    "pairs produced": "conscience_queue_produced_total",
    "pairs dropped": "conscience_queue_drops_total",
    "adapter in service": "conscience_adapter_info",
    "adapter swaps": "conscience_adapter_swaps_total",
    "adapter rejections": "conscience_adapter_rejected_total",
    "vLLM throughput": "vllm:generation_tokens_total",
    "vLLM KV usage": "vllm:kv_cache_usage_perc",
    "trainer rounds": "conscience_trainer_rounds_total",
    "trainer queue depth": "conscience_trainer_queue_depth",
    "trainer last publish": "conscience_trainer_last_publish_timestamp_seconds",
}


def test_dashboard_shows_what_operators_need() -> None:
    used = set().union(*(metric_names(concrete(expr)) for _, expr in dashboard_targets()))
    missing = {what: name for what, name in REQUIRED_SERIES.items() if name not in used}
    assert not missing
    for title in ("Draft", "Review", "Rewrite", "End to end"):
        queries = [e for t, e in dashboard_targets() if t == title]
        quantiles = [e.split(",")[0] for e in queries]
        assert quantiles == [f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99")], title
        if title != "End to end":
            assert all(f'stage="{title.lower()}"' in e for e in queries), title
    flag_rate = next(e for t, e in dashboard_targets() if t == "Flag rate by framework")
    assert "sum by (framework)" in flag_rate and 'verdict="unethical"' in flag_rate


def test_panels_are_well_formed() -> None:
    board = dashboard()
    assert board["uid"] == "conscience-overview" and board["title"] == "Conscience"
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        columns = range(grid["x"], grid["x"] + grid["w"])
        mine = {(x, y) for x in columns for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == panel["datasource"]


def test_every_query_filters_by_the_job_and_instance_variables() -> None:
    for title, expr in dashboard_targets():
        selectors = expr.count("{")
        assert selectors, title
        assert expr.count('job=~"$job", instance=~"$instance"') == selectors, title


def test_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
        assert "conscience_requests_in_flight" in variables[name]["definition"]
        assert "conscience_trainer_queue_depth" in variables[name]["definition"]  # its job too
    # The trainer is scraped too (job conscience-trainer): it is not a serving replica.
    (replicas,) = [e for t, e in dashboard_targets() if t == "Replicas up"]
    assert 'job!="conscience-trainer"' in replicas


def test_provisioning_matches_the_compose_mounts() -> None:
    provisioning = GRAFANA / "provisioning"
    (source,) = load_yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert (source["type"], source["uid"]) == ("prometheus", "prometheus")
    assert source["url"] == "http://prometheus:9090" and source["isDefault"]
    (provider,) = load_yaml(provisioning / "dashboards" / "conscience.yaml")["providers"]
    assert provider["type"] == "file"
    compose = load_yaml(DEPLOY / "compose.yaml")["services"]["grafana"]
    binds = [v.split(":") for v in compose["volumes"] if v.startswith("./")]
    mounts = {target: src for src, target, *_ in binds}
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    home = compose["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/conscience.json"
