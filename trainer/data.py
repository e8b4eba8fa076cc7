"""Turn leased pair records into a round's data: checked, tokenized, split, with replay mixed in.

A record is *skipped* (and counted) when its schema version is unknown to this trainer, when
prompt + answer is longer than ``max_length`` tokens, or when chosen and rejected are the same
answer (no preference: its NLL term would only teach the flagged draft); skipped records are
still consumed (acked), since no later round of this trainer could use them either. A stable
slice of the rest, chosen by hashing the record id, is *held out*: measured, never trained on.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.records import SCHEMA_VERSION, Message, PairRecord


class ReplayRow(BaseModel):
    """One line of the replay file: TRL's conversational preference format."""

    model_config = ConfigDict(extra="ignore")

    prompt: list[Message] = Field(min_length=1)
    chosen: list[Message] = Field(min_length=1)
    rejected: list[Message] = Field(min_length=1)


@dataclass
class Example:
    """One tokenized preference pair."""

    id: str
    row: dict[str, Any]  # {"prompt", "chosen", "rejected"} as lists of message dicts
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]


@dataclass
class RoundData:
    """What one round trains on, measures on, and skipped."""

    train: list[Example] = field(default_factory=list)
    heldout: list[Example] = field(default_factory=list)
    replay: list[Example] = field(default_factory=list)
    skipped_schema: list[str] = field(default_factory=list)
    skipped_long: list[str] = field(default_factory=list)
    skipped_unchanged: list[str] = field(default_factory=list)

    def consumed_ids(self) -> list[str]:
        """Every queued record id this round used up (trained, held out or skipped)."""
        ids = [e.id for e in self.train + self.heldout]
        return ids + self.skipped_schema + self.skipped_long + self.skipped_unchanged


def _chat_ids(tokenizer: Any, messages: list[dict], generation_prompt: bool) -> list[int]:
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=generation_prompt
    )
    return list(encoded["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def encode(tokenizer: Any, pair_id: str, row: dict[str, Any]) -> Example:
    """Tokenize one conversational preference row with the tokenizer's chat template.

    The answer starts where the prompt alone and prompt + answer renderings diverge (as in TRL).
    """
    prompt = _chat_ids(tokenizer, row["prompt"], generation_prompt=True)
    chosen = _chat_ids(tokenizer, row["prompt"] + row["chosen"], generation_prompt=False)
    rejected = _chat_ids(tokenizer, row["prompt"] + row["rejected"], generation_prompt=False)
    cut = min(_common_prefix(prompt, chosen), _common_prefix(prompt, rejected))
    return Example(pair_id, row, prompt[:cut], chosen[cut:], rejected[cut:])


def _row(record: PairRecord | ReplayRow) -> dict[str, Any]:
    dump = record.model_dump(include={"prompt", "chosen", "rejected"})
    return {key: dump[key] for key in ("prompt", "chosen", "rejected")}


def _fits(example: Example, max_length: int) -> bool:
    longest = max(len(example.chosen_ids), len(example.rejected_ids))
    return bool(example.chosen_ids and example.rejected_ids) and (
        len(example.prompt_ids) + longest <= max_length
    )


def _answer(messages: Sequence[Any]) -> str:
    return "\n".join(m.content for m in messages).strip()


def _heldout_rank(pair_id: str) -> str:
    return hashlib.sha256(pair_id.encode()).hexdigest()


def prepare_round(
    records: Sequence[PairRecord],
    tokenizer: Any,
    *,
    max_length: int,
    heldout_fraction: float,
) -> RoundData:
    """Check, tokenize and split one round's records."""
    data, usable = RoundData(), []
    for record in records:
        if record.schema_version != SCHEMA_VERSION:
            data.skipped_schema.append(record.id)
            continue
        if _answer(record.chosen) == _answer(record.rejected):
            data.skipped_unchanged.append(record.id)
            continue
        example = encode(tokenizer, record.id, _row(record))
        if _fits(example, max_length):
            usable.append(example)
        else:
            data.skipped_long.append(record.id)
    n_heldout = math.ceil(heldout_fraction * len(usable)) if len(usable) > 1 else 0
    n_heldout = min(n_heldout, len(usable) - 1)
    by_rank = sorted(usable, key=lambda e: _heldout_rank(e.id))
    held = {e.id for e in by_rank[:n_heldout]}
    data.heldout = [e for e in usable if e.id in held]
    data.train = [e for e in usable if e.id not in held]
    return data


def load_replay(path: Path) -> list[ReplayRow]:
    """Read the replay JSONL (one preference row per line; blank lines ignored)."""
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(ReplayRow.model_validate(json.loads(line)))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not a preference row: {exc}") from exc
    return rows


def sample_replay(
    rows: Sequence[ReplayRow], n: int, tokenizer: Any, *, max_length: int, seed: int
) -> list[Example]:
    """Up to ``n`` replay rows that fit ``max_length``, drawn reproducibly from ``seed``."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    picked = []
    for index in order:
        if len(picked) == n:
            break
        example = encode(tokenizer, f"replay-{index}", _row(rows[index]))
        if _fits(example, max_length):
            picked.append(example)
    return picked
