"""Evaluation rows and their files: JSONL (one object a line) or CSV (one row a record).

A row has ``prompt`` (a string) or ``messages`` (chat messages), an optional fixed ``answer``
(judge-only evaluation), a ``label`` (``harmful`` | ``benign``) and optional ``category``,
``id``, ``source``, ``split``. With an answer the label is about the answer (should the
judge flag it?); without one it is about the prompt (should the conscience act on it?).
Every parse error names the file and the line it starts on.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Label = Literal["harmful", "benign"]
Split = Literal["dev", "test"]


class DatasetError(ValueError):
    """A dataset file could not be read; the message names the file and line."""


class ChatTurn(BaseModel):
    """One chat message of a row's conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class EvalItem(BaseModel):
    """One labelled evaluation row."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    prompt: str | None = None
    messages: list[ChatTurn] | None = None
    answer: str | None = None
    label: Label
    category: str | None = None
    source: str | None = None
    split: Split | None = None
    injection: str | None = Field(None, description="Judge-aimed injection applied to answer.")
    base_id: str | None = Field(None, description="The un-injected row this one derives from.")

    @model_validator(mode="after")
    def _one_conversation(self) -> EvalItem:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("'prompt' is empty")
        if self.messages is not None and not any(
            m.role == "user" and m.content.strip() for m in self.messages
        ):
            raise ValueError("'messages' needs a user message with content")
        return self

    @property
    def kind(self) -> Literal["judge", "chat"]:
        """``judge``: a fixed answer to review; ``chat``: the server drafts the answer."""
        return "judge" if self.answer is not None else "chat"

    def chat(self) -> list[dict[str, str]]:
        """The conversation as plain chat messages."""
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]


def load_dataset(path: Path) -> list[EvalItem]:
    """Rows of a ``.jsonl``/``.json`` or ``.csv`` file; ids default to ``line-N``."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    reader = _csv_rows if path.suffix.lower() == ".csv" else _jsonl_rows
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    for line, raw in reader(path):
        item = _validate(path, line, raw)
        if item.id in seen:
            raise DatasetError(
                f"{path}:{line}: duplicate id {item.id!r} (first on line {seen[item.id]})"
            )
        seen[item.id] = line
        items.append(item)
    if not items:
        raise DatasetError(f"{path}: no rows")
    return items


def _validate(path: Path, line: int, raw: object) -> EvalItem:
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}:{line}: expected a JSON object, got {type(raw).__name__}")
    try:
        return EvalItem.model_validate({"id": f"line-{line}", **raw})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        field = f" field {where!r}:" if where else ""
        raise DatasetError(f"{path}:{line}:{field} {first['msg']}") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, object]]:
    with path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                yield line, json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{line}: invalid JSON: {exc.msg}") from None


def _csv_rows(path: Path) -> Iterator[tuple[int, object]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"label"} - set(reader.fieldnames or ())
        if missing or not {"prompt", "messages"} & set(reader.fieldnames or ()):
            raise DatasetError(f"{path}:1: the header needs 'label' and 'prompt' or 'messages'")
        start = reader.line_num + 1
        for record in reader:
            yield start, _csv_record(path, start, record)
            start = reader.line_num + 1


def _csv_record(path: Path, line: int, record: dict[str | None, object]) -> dict:
    if None in record:
        raise DatasetError(f"{path}:{line}: more cells than header columns")
    row = {k: v for k, v in record.items() if k is not None and v not in ("", None)}
    if "messages" in row:
        try:
            row["messages"] = json.loads(str(row["messages"]))
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{line}: 'messages' is not JSON: {exc.msg}") from None
    return row


def write_jsonl(items: Iterable[EvalItem], path: Path) -> int:
    """Write rows as JSONL (unset fields left out); returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(item.model_dump_json(exclude_none=True) + "\n")
            count += 1
    return count


def file_digest(path: Path) -> str:
    """Short sha256 of a file's bytes (identifies the dataset a run used)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
