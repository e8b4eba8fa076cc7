"""Resumption against the real test server: done rows are skipped, failed ones retried."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from conscience.eval.dataset import load_dataset
from conscience.eval.runner import (
    RESULTS_FILE,
    ItemResult,
    RunConfig,
    RunError,
    load_results,
    run_items,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "eval"
MARKER = 0.123456


def _config(**overrides) -> RunConfig:
    fields = {"dataset": "mini", "dataset_digest": "d1", "frameworks": ["three_laws"], **overrides}
    return RunConfig(**fields)


def _run(items, out: Path, base_url: str, config: RunConfig | None = None) -> list[ItemResult]:
    return asyncio.run(
        run_items(items, config or _config(), out, base_url, concurrency=2, progress=False)
    )


def test_restart_skips_done_rows_and_retries_failed_ones(server, tmp_path):
    items = [i for i in load_dataset(EXAMPLES / "mini.jsonl") if i.kind == "judge"][:6]
    # An interrupted run: only the first three rows were answered.
    first = _run(items[:3], tmp_path, server.base_url)
    assert sorted(r.id for r in first) == sorted(i.id for i in items[:3])
    results = tmp_path / RESULTS_FILE
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    # Mark a done row so a re-request would show; record a failure; leave a torn last line.
    rows[0]["score"] = MARKER
    failed = {
        "id": items[3].id,
        "requested": "three_laws",
        "kind": "judge",
        "label": items[3].label,
    }
    failed["error"] = "timeout: the review took longer than 30.0s"
    lines = [json.dumps(r) for r in [*rows, failed]]
    results.write_text("\n".join(lines) + '\n{"id": "torn", "requ')

    again = _run(items, tmp_path, server.base_url)

    by_id = {r.id: r for r in again}
    assert set(by_id) == {i.id for i in items}
    assert by_id[rows[0]["id"]].score == MARKER, "a done row was evaluated again"
    assert by_id[items[3].id].error is None and by_id[items[3].id].verdict is not None
    written = results.read_text().splitlines()
    assert len(written) == 4 + 3, "three done + one failure + three new rows (torn line dropped)"
    assert all(r.framework == "three_laws" and r.review_layout for r in again)


def test_nothing_left_to_do_sends_nothing(server, tmp_path):
    items = [i for i in load_dataset(EXAMPLES / "mini.jsonl") if i.kind == "judge"][:2]
    _run(items, tmp_path, server.base_url)
    before = (tmp_path / RESULTS_FILE).read_text()
    assert len(_run(items, tmp_path, server.base_url)) == 2
    assert (tmp_path / RESULTS_FILE).read_text() == before


def test_a_directory_holding_another_run_is_refused(server, tmp_path):
    items = [i for i in load_dataset(EXAMPLES / "mini.jsonl") if i.kind == "judge"][:1]
    _run(items, tmp_path, server.base_url)
    with pytest.raises(RunError, match="holds a run with other settings"):
        _run(items, tmp_path, server.base_url, _config(frameworks=["wwjd"]))


def test_a_corrupt_row_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / RESULTS_FILE
    path.write_text('not a row\n{"id": "a"}\n')
    with pytest.raises(RunError, match=rf"{RESULTS_FILE}:1: not a result row"):
        load_results(path)


def test_an_unreachable_server_is_one_clear_error(tmp_path):
    items = load_dataset(EXAMPLES / "mini.jsonl")[:1]
    with pytest.raises(RunError, match=r"no conscience server at http://127\.0\.0\.1:9"):
        _run(items, tmp_path, "http://127.0.0.1:9")
