"""deploy/compose.yaml (and the GPU override), checked structurally: Docker cannot run here.

The files are validated against the Compose Specification's JSON schema (vendored from
compose-spec, Apache-2.0, in schemas/), then the wiring between services is checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from app.models import DEFAULT_MODEL, find_model
from tests.deploy.deploy_helpers import DEPLOY, PROMETHEUS_DIR, ROOT, load_yaml

SCHEMA = json.loads((ROOT / "tests" / "deploy" / "schemas" / "compose-spec.json").read_text())
ADAPTERS = "/var/lib/conscience/adapters"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(DEPLOY / "compose.yaml")


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _merge(base: Any, override: Any) -> Any:
    """Compose's merge of an override file, for mappings (enough for our override)."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {
            k: _merge(base.get(k), override[k]) if k in base else override[k] for k in override
        } | {k: v for k, v in base.items() if k not in override}
    return override


def _volumes(service: dict[str, Any]) -> dict[str, str]:
    """Mount target -> source (a named volume or a ./path) of a service's short-syntax volumes."""
    return {v.split(":")[1]: v.split(":")[0] for v in service.get("volumes", [])}


def _flag(command: list[str], name: str) -> str:
    """The value of ``--name=value`` or ``--name value`` in a command list."""
    for i, arg in enumerate(command):
        if arg == name:
            return command[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {command}")


def test_files_follow_the_compose_specification(compose: dict[str, Any]) -> None:
    jsonschema.validate(compose, SCHEMA)
    gpu = load_yaml(DEPLOY / "compose.gpu.yaml")
    jsonschema.validate(gpu, SCHEMA)
    jsonschema.validate(_merge(compose, gpu), SCHEMA)


def test_services_health_checks_and_restart_policies(services: dict[str, Any]) -> None:
    assert set(services) == {"server", "trainer", "redis", "prometheus", "grafana"}
    for name, service in services.items():
        assert service["restart"] in {"always", "unless-stopped"}, name
        check = service["healthcheck"]
        assert check["test"][0] == "CMD" and len(check["test"]) > 1, name
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_redis_is_durable(services: dict[str, Any], compose: dict[str, Any]) -> None:
    redis = services["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert _flag(command, "--appendonly") == "yes"
    assert _flag(command, "--appendfsync") == "always"
    assert _volumes(redis)["/data"] in compose["volumes"]


def test_server_and_trainer_share_the_image_queue_and_adapters(services: dict[str, Any]) -> None:
    server, trainer = services["server"], services["trainer"]
    assert server["image"] == trainer["image"]
    assert server["build"] == trainer["build"]
    assert (ROOT / "deploy" / server["build"]["context"] / server["build"]["dockerfile"]).is_file()
    assert server["build"]["args"]["ENGINE"] == "cpu"
    for service in (server, trainer):
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert _volumes(service)[ADAPTERS] == "adapters"
    env = server["environment"]
    assert env["CONSCIENCE_QUEUE"].startswith("redis://redis:6379/")
    assert env["CONSCIENCE_ADAPTERS_DIR"] == ADAPTERS
    assert env["CONSCIENCE_HOST"] == "0.0.0.0"
    command = trainer["command"]
    assert command[:2] == ["conscience", "train"]
    assert _flag(command, "--queue") == env["CONSCIENCE_QUEUE"]
    assert _flag(command, "--adapters") == ADAPTERS
    assert _flag(command, "--model") == env["CONSCIENCE_MODEL"]  # the base the server serves


def _interpolated_default(value: str) -> str:
    """A compose value with each ``${NAME:-default}`` replaced by its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_the_model_is_the_default_one_prepared_in_the_image(services: dict[str, Any]) -> None:
    path = Path(_interpolated_default(services["server"]["environment"]["CONSCIENCE_MODEL"]))
    assert path.parent == Path("/var/cache/conscience/models")
    assert path.name == DEFAULT_MODEL.name
    prepared = re.findall(r"conscience models prepare (\S+)", (ROOT / "Dockerfile").read_text())
    assert path.name in {find_model(alias).name for alias in prepared}


def test_server_health_check_waits_for_the_engine(services: dict[str, Any]) -> None:
    check = services["server"]["healthcheck"]
    assert "http://127.0.0.1:8000/ready" in " ".join(check["test"])
    assert check["start_period"]  # the engine takes a while to load


def test_keys_never_sit_in_the_compose_file(services: dict[str, Any]) -> None:
    server = services["server"]
    for service in services.values():
        env = service.get("environment", {})
        assert not {"CONSCIENCE_API_KEYS", "CONSCIENCE_ADMIN_KEY"} & set(env)
    (env_file,) = server["env_file"]
    assert env_file == {"path": "./conscience.env", "required": False}
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert "conscience.env" in ignored


def test_prometheus_and_grafana_are_wired(services: dict[str, Any]) -> None:
    prometheus, grafana = services["prometheus"], services["grafana"]
    mounts = _volumes(prometheus)
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/alerts.yaml"] == "./prometheus/alerts.yaml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    (target,) = config["scrape_configs"][0]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in services and services[host]["ports"][0].endswith(f":{port}")
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for service in services.values():
        for source in _volumes(service).values():
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), source


def test_prometheus_scrapes_the_trainer(services: dict[str, Any]) -> None:
    trainer = services["trainer"]
    port = _flag(trainer["command"], "--metrics-port")
    assert trainer["expose"] == [port]
    jobs = {
        job["job_name"]: job
        for job in load_yaml(PROMETHEUS_DIR / "prometheus.yml")["scrape_configs"]
    }
    (target,) = jobs["conscience-trainer"]["static_configs"][0]["targets"]
    assert target == f"trainer:{port}"
    assert services["prometheus"]["depends_on"]["trainer"]["condition"] == "service_started"


def test_named_volumes_are_declared(services: dict[str, Any], compose: dict[str, Any]) -> None:
    used = {
        source
        for service in services.values()
        for source in _volumes(service).values()
        if not source.startswith(("./", "/"))
    }
    assert (
        used
        == set(compose["volumes"])
        == {
            "redis-data",
            "adapters",
            "prometheus-data",
            "grafana-data",
        }
    )


def test_gpu_override_switches_engine_and_reserves_gpus(compose: dict[str, Any]) -> None:
    merged = _merge(compose, load_yaml(DEPLOY / "compose.gpu.yaml"))["services"]
    for name in ("server", "trainer"):
        service = merged[name]
        assert service["build"]["args"]["ENGINE"] == "gpu"
        assert service["build"]["context"] == ".."  # kept from the base file
        assert service["image"] != compose["services"][name]["image"]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    env = merged["server"]["environment"]
    assert env["CONSCIENCE_ENFORCE_EAGER"] == "false"
    assert (
        env["CONSCIENCE_QUEUE"] == compose["services"]["server"]["environment"]["CONSCIENCE_QUEUE"]
    )
