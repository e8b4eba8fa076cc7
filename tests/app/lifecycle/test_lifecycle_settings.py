"""Lifecycle settings as deployments give them: env vars, Compose's safe defaults, ``off``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from app.settings import Settings

COMPOSE = Path(__file__).resolve().parents[3] / "deploy" / "compose.yaml"


def _server_env(overrides: dict[str, str]) -> dict[str, str]:
    """The Compose server's CONSCIENCE_GATE/MONITOR env, ``${NAME:-default}`` resolved."""
    env = yaml.safe_load(COMPOSE.read_text())["services"]["server"]["environment"]
    wanted = {k: v for k, v in env.items() if k.startswith(("CONSCIENCE_GATE", "CONSCIENCE_MON"))}

    def resolve(value: str) -> str:
        return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: overrides.get(m[1], m[2]), value)

    return {k: resolve(v) for k, v in wanted.items()}


def test_plain_serve_runs_neither():
    settings = Settings()
    assert settings.gate is False and settings.monitor_interval_s is None


def test_compose_gates_and_monitors_by_default(monkeypatch):
    env = _server_env({})
    assert set(env) == {"CONSCIENCE_GATE", "CONSCIENCE_MONITOR_INTERVAL_S"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.gate is True and settings.monitor_interval_s == 900


@pytest.mark.parametrize("off", ["off", "OFF", "", "none"])
def test_compose_can_turn_them_off(monkeypatch, off):
    overrides = {"CONSCIENCE_GATE": "false", "CONSCIENCE_MONITOR_INTERVAL_S": off}
    for name, value in _server_env(overrides).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.gate is False and settings.monitor_interval_s is None


def test_a_bad_interval_is_still_an_error():
    with pytest.raises(ValueError):
        Settings(monitor_interval_s="soon")
    with pytest.raises(ValueError):
        Settings(monitor_interval_s=0)
