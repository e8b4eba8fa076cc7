"""Fixtures for the lifecycle tests: the two trained adapters (once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.lifecycle.lifecycle_helpers import train


@pytest.fixture(scope="session")
def trained_adapters(tiny_model_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """{"helpful": dir, "refuse": dir}: real DPO rounds on the tiny model."""
    return {
        kind: train(tiny_model_dir, tmp_path_factory.mktemp(kind), refuse=kind == "refuse")
        for kind in ("helpful", "refuse")
    }
