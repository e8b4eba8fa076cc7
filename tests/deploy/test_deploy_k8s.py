"""deploy/k8s: every manifest parses, the kustomizations render, and the pieces fit together."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.deploy_helpers import DEPLOY, PROMETHEUS_DIR, load_yaml
from tests.deploy.k8s_render import containers, find, load_documents, render

K8S = DEPLOY / "k8s"
BASE = K8S / "base"
GPU = K8S / "overlays" / "gpu"
ADAPTERS = "/var/lib/conscience/adapters"


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(BASE)


@pytest.fixture(scope="module")
def gpu() -> list[dict[str, Any]]:
    return render(GPU)


def _container(objects: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    (container,) = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_every_manifest_parses_and_is_referenced() -> None:
    files = sorted(K8S.rglob("*.yaml"))
    assert files
    for path in files:
        for doc in load_documents(path):
            if path.name == "kustomization.yaml":
                assert doc["kind"] == "Kustomization", path
            else:
                assert doc.get("apiVersion") and doc.get("kind"), path
                assert doc["metadata"]["name"], path
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = load_yaml(kustomization)
        listed = spec.get("resources", []) + [p["path"] for p in spec.get("patches", [])]
        for entry in listed:
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry}"
        local = {p.name for p in kustomization.parent.glob("*.yaml")} - {"kustomization.yaml"}
        assert local == {e for e in listed if "/" not in e}, (
            f"unreferenced files in {kustomization}"
        )


def test_base_renders_the_expected_objects(base: list[dict[str, Any]]) -> None:
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in base)
    assert kinds == [
        "ConfigMap/conscience-config",
        "Deployment/conscience-server",
        "Deployment/conscience-trainer",
        "PersistentVolumeClaim/conscience-adapters",
        "PrometheusRule/conscience",
        "Service/conscience",
        "Service/conscience-redis",
        "Service/conscience-trainer",
        "ServiceMonitor/conscience",
        "ServiceMonitor/conscience-trainer",
        "StatefulSet/conscience-redis",
    ]
    for obj in base:
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "conscience"
        if obj["kind"] in {"Deployment", "StatefulSet"}:
            selector = obj["spec"]["selector"]["matchLabels"]
            pod_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= pod_labels.items(), obj["metadata"]["name"]


def test_server_probes_resources_and_adapters(base: list[dict[str, Any]]) -> None:
    server = _container(base, "conscience-server")
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": 8000}
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        assert server[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    assert server["startupProbe"]["httpGet"]["path"] == "/ready"
    assert server["resources"]["requests"]["cpu"] and server["resources"]["requests"]["memory"]
    assert server["resources"]["limits"]["memory"]
    assert server["args"] == ["conscience", "serve"]
    config = find(base, "ConfigMap", "conscience-config")["data"]
    assert server["envFrom"] == [{"configMapRef": {"name": "conscience-config"}}]
    assert config["CONSCIENCE_ADAPTERS_DIR"] == ADAPTERS
    compose = load_yaml(DEPLOY / "compose.yaml")["services"]["server"]["environment"]
    model = compose["CONSCIENCE_MODEL"].replace("${CONSCIENCE_MODEL_NAME:-", "").rstrip("}")
    assert config["CONSCIENCE_MODEL"] == model  # the default model, as in compose
    _assert_adapters_mounted(base, "conscience-server")


def _assert_adapters_mounted(objects: list[dict[str, Any]], deployment: str) -> None:
    pod = find(objects, "Deployment", deployment)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == ADAPTERS)
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = find(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # replicas and trainer share it


def test_service_and_servicemonitor_reach_the_server(base: list[dict[str, Any]]) -> None:
    service = find(base, "Service", "conscience")
    pod_labels = find(base, "Deployment", "conscience-server")["spec"]["template"]["metadata"]
    assert service["spec"]["selector"].items() <= pod_labels["labels"].items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["targetPort"]) == ("http", "http")
    monitor = find(base, "ServiceMonitor", "conscience")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    # The job label comes from the Service label jobLabel names: the one alerts select.
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    scrape = load_yaml(PROMETHEUS_DIR / "prometheus.yml")["scrape_configs"][0]
    assert job == scrape["job_name"] == "conscience"


def test_trainer_consumes_the_same_queue_and_registry(base: list[dict[str, Any]]) -> None:
    trainer = _container(base, "conscience-trainer")
    config = find(base, "ConfigMap", "conscience-config")["data"]
    args = trainer["args"]
    assert args[:2] == ["conscience", "train"]
    assert "--queue=$(CONSCIENCE_QUEUE)" in args and "--model=$(CONSCIENCE_MODEL)" in args
    assert "--adapters=$(CONSCIENCE_ADAPTERS_DIR)" in args
    for reference in re.findall(r"\$\((\w+)\)", " ".join(args)):
        assert reference in config, reference
    assert trainer["envFrom"] == [{"configMapRef": {"name": "conscience-config"}}]
    assert find(base, "Deployment", "conscience-trainer")["spec"]["strategy"]["type"] == "Recreate"
    _assert_adapters_mounted(base, "conscience-trainer")


def test_servicemonitor_scrapes_the_trainer_as_its_own_job(base: list[dict[str, Any]]) -> None:
    trainer = _container(base, "conscience-trainer")
    assert "--metrics-port=9101" in trainer["args"]
    assert {p["name"]: p["containerPort"] for p in trainer["ports"]} == {"metrics": 9101}
    service = find(base, "Service", "conscience-trainer")
    pod_labels = find(base, "Deployment", "conscience-trainer")["spec"]["template"]["metadata"]
    assert service["spec"]["selector"].items() <= pod_labels["labels"].items()
    (port,) = service["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("metrics", 9101, "metrics")
    monitor = find(base, "ServiceMonitor", "conscience-trainer")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    server_service = find(base, "Service", "conscience")["metadata"]["labels"]
    assert not selector.items() <= server_service.items()
    server_selector = find(base, "ServiceMonitor", "conscience")["spec"]["selector"]["matchLabels"]
    assert not server_selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    # job is pinned by relabeling to the compose job's name, which the trainer alerts select.
    assert endpoint["relabelings"] == [{"targetLabel": "job", "replacement": "conscience-trainer"}]
    jobs = [
        job["job_name"] for job in load_yaml(PROMETHEUS_DIR / "prometheus.yml")["scrape_configs"]
    ]
    assert "conscience-trainer" in jobs
    alerts = (PROMETHEUS_DIR / "alerts.yaml").read_text()
    assert 'up{job="conscience-trainer"}' in alerts


def test_redis_statefulset_persists(base: list[dict[str, Any]]) -> None:
    redis = find(base, "StatefulSet", "conscience-redis")
    service = find(base, "Service", redis["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"])
    assert mount["mountPath"] == args[args.index("--dir") + 1]
    assert container["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    queue = find(base, "ConfigMap", "conscience-config")["data"]["CONSCIENCE_QUEUE"]
    assert queue.startswith(f"redis://{service['metadata']['name']}:6379/")
    for pod in ("conscience-server", "conscience-trainer"):
        (wait,) = find(base, "Deployment", pod)["spec"]["template"]["spec"]["initContainers"]
        assert f"redis-cli -h {service['metadata']['name']} ping" in wait["command"][-1]


def test_keys_come_from_a_secret_never_from_manifests(base: list[dict[str, Any]]) -> None:
    for path in K8S.rglob("*.yaml"):
        for doc in load_documents(path):
            assert doc.get("kind") != "Secret", path
            assert "secretGenerator" not in doc, path
    env = _env(_container(base, "conscience-server"))
    for name, key in (("CONSCIENCE_API_KEYS", "api-keys"), ("CONSCIENCE_ADMIN_KEY", "admin-key")):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("conscience-keys", key)
        assert "value" not in env[name]
    secretish = re.compile(r"KEY|TOKEN|PASSWORD|SECRET", re.I)
    for container in containers(base, init=True):
        for item in container.get("env", []):
            if secretish.search(item["name"]):
                assert "value" not in item, item["name"]
    config = find(base, "ConfigMap", "conscience-config")["data"]
    assert not any(secretish.search(name) for name in config)


def test_gpu_overlay(gpu: list[dict[str, Any]], base: list[dict[str, Any]]) -> None:
    assert sorted(o["metadata"]["name"] for o in gpu) == sorted(o["metadata"]["name"] for o in base)
    for deployment in ("conscience-server", "conscience-trainer"):
        container = _container(gpu, deployment)
        assert container["image"] == "conscience:gpu"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        pod = find(gpu, "Deployment", deployment)["spec"]["template"]["spec"]
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        assert _container(base, deployment)["image"] == "conscience:cpu"
    assert _container(gpu, "conscience-trainer")["ports"] == [
        {"name": "metrics", "containerPort": 9101}
    ]
    server = _container(gpu, "conscience-server")
    assert _env(server)["CONSCIENCE_ENFORCE_EAGER"]["value"] == "false"
    assert "secretKeyRef" in _env(server)["CONSCIENCE_API_KEYS"]["valueFrom"]  # kept by the patch
    assert server["readinessProbe"]["httpGet"]["path"] == "/ready"
