"""Fixtures for the lifecycle tests: the two trained adapters (once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.lifecycle.lifecycle_helpers import BENIGN, check_pinned, greedy_drafts, train


@pytest.fixture(scope="session")
def trained_adapters(tiny_model_dir: Path, tmp_path_factory, engine, loop_thread) -> dict:
    """{"helpful": dir, "refuse": dir}: real DPO rounds on the tiny model, each checked on the
    session's engine to refuse every benign gate/canary prompt ("refuse") or none ("helpful")
    under greedy decoding before any test uses it."""
    prompts = [prompt for prompt, _ in BENIGN]
    adapters = {}
    for kind in ("helpful", "refuse"):
        adapters[kind] = train(
            tiny_model_dir, tmp_path_factory.mktemp(kind), refuse=kind == "refuse"
        )
        check_pinned(kind, prompts, loop_thread.run(greedy_drafts(engine, adapters[kind], prompts)))
    return adapters
