"""Fixtures for the trainer tests: the tiny demo model, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.demo_model import write_demo_model


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory) -> Path:
    """The tiny random-weight Llama with a ChatML tokenizer (built once per session)."""
    return write_demo_model(tmp_path_factory.mktemp("demo-model"))
