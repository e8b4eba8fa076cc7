"""The task rows of a fine-tuning run: drawn, split into held-out and train, tokenized.

Rows are shuffled with the seed; the first ``heldout`` become the held-out coding prompts
(``OUT/heldout.jsonl``, never trained on), then the first ``rows`` that fit ``max_length``
are trained on (``OUT/train.jsonl``). Tokenizing reuses the trainer's chat-template split
(``trainer.data.encode``): an SFT row is the preference row whose both sides are its answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conscience.finetune.chats import load_chats, write_chats
from trainer.data import Example, encode

Chat = list[dict[str, str]]


@dataclass
class TaskData:
    """Train and held-out chats, and how many rows were too long."""

    train: list[Chat]
    heldout: list[Chat]
    skipped_long: int


def sft_example(tokenizer: Any, index: int, chat: Chat) -> Example:
    """Prompt ids and answer ids of one chat (the answer is its last message)."""
    row = {"prompt": chat[:-1], "chosen": chat[-1:], "rejected": chat[-1:]}
    return encode(tokenizer, f"task-{index}", row)


def split_task(
    path: Path, tokenizer: Any, *, rows: int, heldout: int, max_length: int, seed: int
) -> TaskData:
    """Draw held-out and train chats from ``path`` (see the module docstring)."""
    chats = load_chats(path)
    random.Random(seed).shuffle(chats)
    held, rest = chats[:heldout], chats[heldout:]
    train, skipped = [], 0
    for index, chat in enumerate(rest):
        if len(train) == rows:
            break
        example = sft_example(tokenizer, index, chat)
        if example.chosen_ids and len(example.prompt_ids) + len(example.chosen_ids) <= max_length:
            train.append(chat)
        else:
            skipped += 1
    if not train:
        raise ValueError(f"{path}: no row fits max_length={max_length}")
    return TaskData(train, held, skipped)


def write_split(out: Path, data: TaskData) -> None:
    """``OUT/train.jsonl`` and ``OUT/heldout.jsonl``."""
    write_chats(out / "train.jsonl", data.train)
    if data.heldout:
        write_chats(out / "heldout.jsonl", data.heldout)


def open_questions(path: Path, limit: int | None = None) -> list[Chat]:
    """Prompts to draft on (at most ``limit``): chat JSONL (answers dropped), a CSV with a
    ``goal`` or ``prompt`` column, or one question a line."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".csv":
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(text)))
        column = next((c for c in ("goal", "prompt") if rows and c in rows[0]), None)
        if column is None:
            raise ValueError(f"{path}: a CSV of questions needs a 'goal' or 'prompt' column")
        chats = [[{"role": "user", "content": r[column]}] for r in rows]
    elif text.lstrip().startswith("{"):
        import json

        loaded = [json.loads(line)["messages"] for line in text.splitlines() if line.strip()]
        chats = [[m for m in c if m["role"] != "assistant"] for c in loaded]
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        chats = [[{"role": "user", "content": line}] for line in lines]
    return chats[:limit]
