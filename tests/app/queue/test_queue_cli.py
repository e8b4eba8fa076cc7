"""``conscience queue ...`` commands through typer's CliRunner, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.queue import open_queue
from app.queue.cli import queue_app
from tests.app.queue.queue_helpers import make_record

runner = CliRunner()


def _invoke(url: str, *args: str):
    return runner.invoke(queue_app, [*args, "--queue", url])


def test_stats_peek_requeue_prune(queue_url: str) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(4)] + [make_record(4, framework="wwjd")])
        q.ack([x.record.id for x in q.lease(1, 30, consumer="a")])
        q.lease(1, 3600, consumer="a")
    result = _invoke(queue_url, "stats", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert {k: stats[k] for k in ("depth", "leased", "acked")} == {
        "depth": 3,
        "leased": 1,
        "acked": 1,
    }
    assert stats["by_framework"] == {"three_laws": 3, "wwjd": 1}
    assert stats["oldest_age_s"] >= 0
    table = _invoke(queue_url, "stats")
    assert table.exit_code == 0 and "ready (depth)" in table.stdout and "wwjd" in table.stdout
    peek = _invoke(queue_url, "peek", "2")
    assert peek.exit_code == 0 and "r-2" in peek.stdout and "r-4" not in peek.stdout
    assert _invoke(queue_url, "requeue").stdout == "released 1 leases\n"
    assert _invoke(queue_url, "prune", "--max-acked", "0").stdout == "removed 1 acked records\n"
    assert json.loads(_invoke(queue_url, "stats", "--json").stdout)["depth"] == 4


def test_export_then_import_into_another_queue(queue_url: str, tmp_path: Path) -> None:
    with open_queue(queue_url) as q:
        q.produce([make_record(i) for i in range(3)])
        q.ack([x.record.id for x in q.lease(1, 30, consumer="a")])
    out = tmp_path / "out" / "pairs.jsonl"
    result = _invoke(queue_url, "export", str(out))
    assert result.stdout == f"exported 2 records to {out}\n"
    assert _invoke(queue_url, "export", str(out), "--all").stdout.startswith("exported 3")
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    result = _invoke(target, "import", str(out))
    assert result.exit_code == 0 and result.stdout == f"imported 3 records from {out}\n"
    with open_queue(target) as q:
        assert [r.id for r in q.records()] == ["r-0", "r-1", "r-2"]


def test_errors_are_one_line_and_exit_1(queue_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(make_record(0).model_dump_json() + "\n{}\n")
    result = _invoke(queue_url, "import", str(bad))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "line 2" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert _invoke(queue_url, "prune").exit_code == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x", "unsupported queue URL"),
        ("redis://127.0.0.1:1/0", "Connection refused"),
    ],
)
def test_bad_queue_urls_fail_cleanly(url: str, message: str) -> None:
    result = _invoke(url, "stats")
    assert result.exit_code == 1
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_corrupt_sqlite_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "pairs.db"
    path.write_bytes(b"garbage" * 1000)
    result = _invoke(f"sqlite:///{path}", "stats")
    assert result.exit_code == 1
    assert result.stderr == f"error: SQLite queue {path}: file is not a database\n"


def test_queue_url_defaults_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'env.db'}"
    with open_queue(url) as q:
        q.produce([make_record(0)])
    monkeypatch.setenv("CONSCIENCE_QUEUE", url)
    result = runner.invoke(queue_app, ["stats", "--json"])
    assert json.loads(result.stdout)["depth"] == 1
