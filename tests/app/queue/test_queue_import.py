"""``conscience queue import`` of operators' own data: plain TRL preference JSONL in, trained on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.adapter_registry import AdapterRegistry
from app.queue import open_queue
from app.queue.cli import queue_app
from tests.app.queue.queue_helpers import make_record

runner = CliRunner()

TOPICS = ["bread", "France", "robots", "rights", "foxes", "dogs", "numbers", "mercy"]


def _conversational(i: int) -> dict:
    topic = TOPICS[i % len(TOPICS)]
    return {
        "prompt": [{"role": "user", "content": f"Tell me about {topic}, case {i}."}],
        "chosen": [{"role": "assistant", "content": f"A helpful, honest answer about {topic}."}],
        "rejected": [{"role": "assistant", "content": f"It could cause harm with {topic}."}],
    }


def _standard(i: int) -> dict:
    return {"prompt": f"Question {i}?", "chosen": f"Kind answer {i}.", "rejected": f"Rude {i}."}


def _write(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _import(url: str, file: Path, *options: str):
    return runner.invoke(queue_app, ["import", str(file), *options, "--queue", url])


def test_plain_trl_rows_get_import_provenance(queue_url: str, tmp_path: Path) -> None:
    file = _write(tmp_path / "trl.jsonl", [_conversational(0), "", _standard(1)])
    result = _import(queue_url, file)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"imported 2 records from {file}\n"
    with open_queue(queue_url) as q:
        first, second = q.records()
    assert [m.model_dump() for m in first.prompt] == _conversational(0)["prompt"]
    assert [(m.role, m.content) for m in second.prompt] == [("user", "Question 1?")]
    assert [(m.role, m.content) for m in second.chosen] == [("assistant", "Kind answer 1.")]
    assert [(m.role, m.content) for m in second.rejected] == [("assistant", "Rude 1.")]
    for record in (first, second):
        assert (record.source, record.framework, record.verdict) == (
            "import",
            "imported",
            "unknown",
        )
        assert (record.score, record.framework_version, record.review_prompt_hash) == (None, "", "")
        assert record.id.startswith("import-")


def test_reimport_adds_nothing_and_framework_can_be_named(queue_url: str, tmp_path: Path) -> None:
    file = _write(tmp_path / "trl.jsonl", [_conversational(i) for i in range(3)])
    assert _import(queue_url, file).exit_code == 0
    assert _import(queue_url, file).exit_code == 0  # same content, same ids: skipped
    result = _import(queue_url, file, "--framework", "local_norms")
    assert result.exit_code == 0, result.output
    with open_queue(queue_url) as q:
        stats = q.stats()
    assert stats.depth == 6
    assert stats.by_framework == {"imported": 3, "local_norms": 3}


def test_full_records_and_plain_rows_mix(queue_url: str, tmp_path: Path) -> None:
    exported = make_record(7, framework="wwjd")
    file = _write(tmp_path / "mixed.jsonl", [exported.model_dump_json(), _standard(0)])
    result = _import(queue_url, file, "--framework", "ignored_for_full_records")
    assert result.exit_code == 0, result.output
    with open_queue(queue_url) as q:
        full, plain = q.records()
    assert full.model_dump() == exported.model_copy(update={"source": "import"}).model_dump()
    assert plain.framework == "ignored_for_full_records"


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ('{"prompt": "q", "chosen": "a"', "not valid JSON"),
        ('["q", "a", "b"]', "expected a JSON object, got list"),
        ('{"prompt": "q", "chosen": "a"}', "rejected: Field required"),
        ('{"prompt": "q", "chosen": "", "rejected": "b"}', "chosen: must not be empty"),
        ('{"prompt": "q", "chosen": [], "rejected": "b"}', "chosen: List should have at least 1"),
        (
            '{"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}',
            "chosen: every message must have role 'assistant'",
        ),
        (
            '{"prompt": [{"role": "robot", "content": "q"}], "chosen": "a", "rejected": "b"}',
            "prompt.0.role: Input should be",
        ),
        ('{"prompt": "q", "chosen": "a", "rejected": "b", "score": 2}', "unknown field(s) score"),
        ('{"prompt": "q", "chosen": "a", "rejected": "b", "verdict": "x"}', "field(s) verdict"),
        ('{"prompt": "q", "chosen": "a", "rejected": "b", "framework": "x"}', "prompt: Input"),
    ],
)
def test_malformed_lines_name_their_number_and_import_nothing(
    queue_url: str, tmp_path: Path, bad: str, reason: str
) -> None:
    file = _write(tmp_path / "bad.jsonl", [_standard(0), "", bad, _standard(1)])
    result = _import(queue_url, file)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {file}, line 3: invalid record (")
    assert reason in result.stderr, result.stderr
    assert result.stderr.endswith("; nothing imported\n") and result.stderr.count("\n") == 1
    with open_queue(queue_url) as q:
        assert q.stats().depth == 0


def test_empty_framework_is_refused(tmp_path: Path) -> None:
    file = _write(tmp_path / "trl.jsonl", [_standard(0)])
    result = _import(f"sqlite:///{tmp_path / 'q.db'}", file, "--framework", " ")
    assert result.exit_code == 1 and "framework" in result.stderr


def test_plain_trl_file_imports_and_trains(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The operator's path end to end: `conscience queue import` then `conscience train --once`."""
    queue = f"sqlite:///{tmp_path / 'pairs.db'}"
    file = _write(tmp_path / "curated.jsonl", [_conversational(i) for i in range(12)])
    result = _import(queue, file, "--framework", "curated")
    assert result.exit_code == 0, result.output
    conscience = Path(sys.executable).with_name("conscience")
    options = {
        "queue": queue,
        "adapters": tmp_path / "adapters",
        "model": tiny_model_dir,
        "min-pairs": 8,
        "round-size": 32,
        "learning-rate": 1e-3,
        "epochs": 2,
        "per-device-batch-size": 8,
        "max-length": 128,
        "heldout-fraction": 0.25,
    }
    args = [f"--{name}={value}" for name, value in options.items()]
    done = subprocess.run(
        [str(conscience), "train", "--once", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    manifest = AdapterRegistry(tmp_path / "adapters").read_manifest()
    entry = manifest.entry(manifest.current)
    assert manifest.current == "v000001"
    assert len(entry.pair_ids) == 12 and all(i.startswith("import-") for i in entry.pair_ids)
    assert entry.metrics["pairs_trained"] + entry.metrics["pairs_heldout"] == 12
    with open_queue(queue) as q:
        stats = q.stats()
    assert (stats.acked, stats.depth, stats.leased) == (12, 0, 0)
