"""Reading pair files for ``conscience queue import``: our records or plain TRL preference rows.

Each non-blank line of the JSONL file is one of:

- a full ``PairRecord`` (what ``conscience queue export`` writes; it has ``framework``): kept
  as is, marked ``source="import"``;
- a plain row of TRL's preference format with only ``prompt``, ``chosen`` and ``rejected``,
  either conversational (lists of chat messages; ``chosen``/``rejected`` are assistant turns)
  or standard (strings, read as one user turn and one assistant answer). Its provenance is
  filled in: ``source="import"``, framework ``imported`` (or the one the operator names),
  verdict ``unknown``, no score, empty framework version and review hash (no review ran), and
  an id derived from the content, so importing the same file twice adds nothing.

Every line is validated before any record is returned: one bad line raises ``QueueError``
naming its line number, and nothing is imported.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.queue.base import QueueError
from app.records import Message, PairRecord

IMPORTED_FRAMEWORK = "imported"
_ROLES = {"prompt": "user", "chosen": "assistant", "rejected": "assistant"}
TRL_FIELDS = tuple(_ROLES)


class TrlRow(BaseModel):
    """One row of TRL's conversational preference format with an explicit prompt."""

    model_config = ConfigDict(extra="forbid")

    prompt: list[Message] = Field(min_length=1)
    chosen: list[Message] = Field(min_length=1)
    rejected: list[Message] = Field(min_length=1)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrlRow:
        """Validate a row; standard-format strings become one message with the usual role."""
        data = dict(data)
        for name, role in _ROLES.items():
            value = data.get(name)
            if isinstance(value, str):
                if not value.strip():
                    raise ValueError(f"{name}: must not be empty")
                data[name] = [{"role": role, "content": value}]
        row = cls.model_validate(data)
        for name in ("chosen", "rejected"):
            if any(m.role != "assistant" for m in getattr(row, name)):
                raise ValueError(f"{name}: every message must have role 'assistant'")
        return row

    def to_record(self, framework: str) -> PairRecord:
        """A pair record with the import's provenance and a content-derived id."""
        turns = [[m.model_dump() for m in t] for t in (self.prompt, self.chosen, self.rejected)]
        body = json.dumps([framework, *turns], sort_keys=True, ensure_ascii=False)
        return PairRecord(
            id=f"import-{hashlib.sha256(body.encode()).hexdigest()[:32]}",
            prompt=self.prompt,
            chosen=self.chosen,
            rejected=self.rejected,
            framework=framework,
            framework_version="",
            review_prompt_hash="",
            verdict="unknown",
            score=None,
            source="import",
        )


def parse_line(line: str, framework: str = IMPORTED_FRAMEWORK) -> PairRecord:
    """One JSONL line as a record; ``ValueError`` with a one-line reason when it is not one."""
    try:
        data: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    try:
        if "framework" in data:  # a full record, as `conscience queue export` writes
            return PairRecord.model_validate(data).model_copy(update={"source": "import"})
        unknown = sorted(set(data) - set(TRL_FIELDS))
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(unknown)}: a plain TRL row has only "
                f"{', '.join(TRL_FIELDS)}, a full record also has framework and the other "
                "fields `conscience queue export` writes"
            )
        return TrlRow.from_json(data).to_record(framework)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise ValueError(f"{where}: {first['msg']}") from None


def read_pairs(path: str | Path, framework: str = IMPORTED_FRAMEWORK) -> list[PairRecord]:
    """Every record of a JSONL file (blank lines skipped), all validated before returning.

    ``framework`` names the framework plain TRL rows are filed under (full records keep
    theirs). Raises ``QueueError`` for an unreadable file or the first bad line.
    """
    path = Path(path)
    if not framework.strip():
        raise QueueError("the framework for imported rows must not be empty")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise QueueError(f"cannot read {path}: {exc}") from exc
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(parse_line(line, framework))
        except ValueError as exc:
            raise QueueError(
                f"{path}, line {number}: invalid record ({exc}); nothing imported"
            ) from None
    return records
