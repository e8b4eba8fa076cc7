"""``conscience finetune`` pieces that need no engine: batches, config, CLI errors, data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conscience.finetune.chats import ChatDataError, load_chats
from conscience.finetune.config import FinetuneConfig
from conscience.finetune.run import batch_indices


def test_every_row_is_seen_once_per_epoch():
    seen = [i for step in range(5) for i in batch_indices(step, 2, 10, seed=1)]
    assert sorted(seen) == list(range(10))
    assert batch_indices(0, 2, 10, seed=1) == batch_indices(0, 2, 10, seed=1)
    assert [batch_indices(s, 3, 10, 0) for s in range(4)] != [
        batch_indices(s, 3, 10, 1) for s in range(4)
    ]


def test_config_reuses_the_trainers_lora_fields_and_checks_values():
    config = FinetuneConfig(data=Path("d.jsonl"), out=Path("o"))
    assert config.lora_r == 8 and config.beta == 0.1 and config.registry == Path("o/adapters")
    assert config.trainer_config(Path("m")).lora_target_modules == ["all-linear"]
    with pytest.raises(ValueError, match="steps must be positive"):
        FinetuneConfig(data=Path("d"), out=Path("o"), steps=0)
    with pytest.raises(ValueError, match="alignment must be"):
        FinetuneConfig(data=Path("d"), out=Path("o"), alignment="maybe")  # type: ignore[arg-type]


def test_chat_rows_must_end_with_the_answer(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(ChatDataError, match=r"bad\.jsonl:1: the last message"):
        load_chats(bad)


def _cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "conscience.cli", "finetune", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_cli_errors_are_one_line(tmp_path: Path):
    missing = _cli("--out", str(tmp_path / "o"))
    assert missing.returncode == 1 and missing.stderr.strip() == "error: missing --data"
    unknown = _cli("--data", "x.jsonl", "--out", str(tmp_path / "o"), "--model", str(tmp_path))
    assert unknown.returncode == 1
    assert len(unknown.stderr.strip().splitlines()) == 1 and "Traceback" not in unknown.stderr
    helped = _cli("--help")
    assert helped.returncode == 0 and "--alignment-weight" in helped.stdout
