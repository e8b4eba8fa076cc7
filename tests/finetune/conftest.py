"""Fixtures for the finetune tests: the tiny demo model, written once per module run."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.demo_model import write_demo_model


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    """The tiny random-weight Llama with a ChatML tokenizer."""
    return write_demo_model(tmp_path_factory.mktemp("models") / "tiny-model")
