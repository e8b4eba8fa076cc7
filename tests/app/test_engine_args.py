"""vLLM engine arguments built from the server settings (no engine is started)."""

from pathlib import Path

from app.settings import Settings
from app.vllm_engine import CPU_DEFAULT_BLOCK_SIZE, engine_args


def test_reviews_are_scheduled_first_only_when_asked(tmp_path: Path):
    plain = engine_args(Settings(), tmp_path, "m")
    assert plain.scheduling_policy == "fcfs"
    assert plain.block_size == CPU_DEFAULT_BLOCK_SIZE  # this suite runs on the CPU build
    first = engine_args(Settings(review_priority=True), tmp_path, "m")
    assert first.scheduling_policy == "priority"
