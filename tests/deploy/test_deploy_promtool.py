"""promtool on our Prometheus config, alert rules, their unit tests and the dashboard's queries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.deploy_helpers import (
    DEPLOY,
    PROMETHEUS_DIR,
    ROOT,
    alert_rules,
    concrete,
    dashboard_targets,
    load_yaml,
    require_tool,
)


def _promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    done = subprocess.run(
        [require_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_config_is_valid_and_loads_the_alert_rules() -> None:
    output = _promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: prometheus.yml is valid prometheus config file syntax" in output
    assert "SUCCESS: 1 rule files found" in output
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yaml"]
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    assert jobs == {
        "conscience": [{"targets": ["server:8000"]}],  # ConscienceServerDown selects it
        "conscience-trainer": [{"targets": ["trainer:9101"]}],  # the trainer alerts select it
    }


def test_rules_are_valid() -> None:
    output = _promtool("check", "rules", "alerts.yaml")
    assert f"SUCCESS: {len(alert_rules())} rules found" in output


def test_alert_unit_tests_pass() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "alerts.test.yaml")


def test_every_alert_has_a_unit_test_severity_and_summary() -> None:
    tests = load_yaml(PROMETHEUS_DIR / "alerts.test.yaml")["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    alerts = [rule for rule in alert_rules() if "alert" in rule]
    assert {rule["alert"] for rule in alerts} == tested
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_kubernetes_prometheusrule_carries_the_same_rules() -> None:
    rule = load_yaml(DEPLOY / "k8s" / "base" / "prometheusrule.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"]["groups"] == load_yaml(PROMETHEUS_DIR / "alerts.yaml")["groups"]
    check = [sys.executable, str(ROOT / "scripts" / "sync-k8s-rules.py"), "--check"]
    done = subprocess.run(check, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables expanded, through Prometheus's own parser."""
    targets = dashboard_targets()
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": concrete(expr)}
        for i, (_, expr) in enumerate(targets)
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = _promtool("check", "rules", str(path), cwd=tmp_path)
    assert f"SUCCESS: {len(targets)} rules found" in output
