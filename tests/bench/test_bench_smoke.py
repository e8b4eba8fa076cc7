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
    ("clean", "off/auto"),
    ("clean", "flag/auto"),
    ("clean", "rewrite/auto"),
    ("clean", "flag/framework_first"),
    ("flagged", "vllm"),
    ("flagged", "off/auto"),
    ("flagged", "flag/auto"),
    ("flagged", "rewrite/auto"),
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
        assert row.prefix_cache_hit is not None  # vLLM's own counters, on both servers
        if row.target in ("flag", "rewrite"):
            assert row.review_prompt_tokens and row.review_prefill_tokens is not None
            assert row.p50_vs_vllm is not None
            # the review's own price: over mode off on the same server (the first layout's)
            assert (row.p50_vs_off is not None) == (row.review_layout == "auto")
    # the auto layout's reviews continue the draft: the prefix cache serves part of each
    for row in bench.rows:
        if (row.traffic, label(row)) == ("clean", "flag/auto"):
            assert row.review_cache_hit and row.review_cache_hit > 0
            assert row.review_prefill_tokens < row.review_prompt_tokens
    assert "vllm-nolora" in (out / "table.txt").read_text()
    assert (out / "latency.png").stat().st_size > 0
    assert len(list((out / "logs").glob("*.log"))) == 5
