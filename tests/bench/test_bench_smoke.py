"""``conscience bench --quick`` end to end on the tiny model: real servers, every row, no errors.

It starts plain vLLM's server (with and without LoRA) and ours (two flag thresholds) as
subprocesses, one at a time. Nothing here asserts on speed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from conscience.bench.cli import QUICK
from conscience.bench.report import BenchResult, label
from conscience.cli import build_cli

pytestmark = pytest.mark.slow

EXPECTED = {
    ("clean", "vllm-nolora"),
    ("clean", "vllm"),
    ("clean", "off/framework_first"),
    ("clean", "flag/framework_first"),
    ("clean", "rewrite/framework_first"),
    ("flagged", "vllm"),
    ("flagged", "off/framework_first"),
    ("flagged", "flag/framework_first"),
    ("flagged", "rewrite/framework_first"),
}
FLAGGED_ACTIONS = {"off": "passed", "flag": "flagged", "rewrite": "rewritten"}


def test_quick_bench_measures_every_target_without_errors(tiny_model_dir: Path, tmp_path: Path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        build_cli(), ["bench", "--model", str(tiny_model_dir), "--quick", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output

    bench = BenchResult.model_validate_json((out / "bench.json").read_text())
    requests, tokens = QUICK["requests"], QUICK["max_tokens"]
    seen = {(row.traffic, label(row), row.concurrency) for row in bench.rows}
    assert seen == {(t, name, c) for t, name in EXPECTED for c in (1, 2)}
    for row in bench.rows:
        assert row.errors == 0, row.first_error
        assert row.requests == requests
        assert row.output_tokens == requests * tokens  # ignore_eos + min_tokens: exactly K each
        assert row.ttft_p50_ms is not None
        if row.traffic == "flagged" and row.target in FLAGGED_ACTIONS:
            assert row.actions == {FLAGGED_ACTIONS[row.target]: requests}
        elif row.target in ("flag", "rewrite"):
            assert row.actions == {"passed": requests}
    assert "vllm-nolora" in (out / "table.txt").read_text()
    assert (out / "latency.png").stat().st_size > 0
    assert len(list((out / "logs").glob("*.log"))) == 4
