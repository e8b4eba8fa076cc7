"""Prompt sets for the promotion gate and the canary monitor.

A set is a list of ``Item`` (a conversation and, for benign items, an optional reference
answer). Files: JSONL (``prompt`` or ``messages``; ``answer`` or ``reference``; other keys
ignored), CSV (``prompt`` or ``goal`` column; ``answer``
or ``reference``) or TXT (one prompt per line).

Defaults, when no file is configured: the sets shipped inside the package (``data/``: the
benign and harmful rows of ``examples/eval/mini.jsonl`` and the prompts of
``examples/loop/prompts.txt`` for canaries, so an installed wheel or the container image has
them too) plus, where the shared data directory exists, dev-split rows only (XSTest ``safe``
prompts with GPT-4's full-compliance completions as references; JailbreakBench and AdvBench
harmful behaviours). The test-split files named in ``../shared/data/README.md`` are never
read here.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
SHIPPED = Path(__file__).resolve().parent / "data"  # package data (pyproject.toml)


@dataclass(frozen=True)
class Item:
    """One prompt of a set."""

    messages: tuple[tuple[str, str], ...]
    reference: str | None = None

    @property
    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    @classmethod
    def of(cls, prompt: str | list[dict], reference: str | None = None) -> Item:
        if isinstance(prompt, str):
            return cls((("user", prompt),), reference or None)
        return cls(tuple((m["role"], m["content"]) for m in prompt), reference or None)


def load_set(path: Path) -> list[Item]:
    """Every item of a JSONL, CSV or TXT file (``ValueError`` naming a bad line)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        return [Item.of(line.strip()) for line in text.splitlines() if line.strip()]
    rows = _csv_rows(text) if path.suffix == ".csv" else _jsonl_rows(path, text)
    return [_item(path, n, row) for n, row in rows]


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append((n, json.loads(line)))
            except ValueError as exc:
                raise ValueError(f"{path}, line {n}: {exc}") from exc
    return rows


def _csv_rows(text: str) -> list[tuple[int, dict]]:
    return list(enumerate(csv.DictReader(text.splitlines()), start=2))


def _item(path: Path, n: int, row: dict) -> Item:
    prompt = row.get("messages") or row.get("prompt") or row.get("goal")
    if not prompt:
        raise ValueError(f"{path}, line {n}: needs 'prompt', 'messages' or 'goal'")
    return Item.of(prompt, row.get("reference") or row.get("answer"))


def _shared_benign(shared: Path) -> list[Item]:
    prompts = shared / "xstest" / "xstest_prompts.csv"
    answers = shared / "xstest" / "model_completions" / "xstest_v2_completions_gpt4.csv"
    if not prompts.is_file():
        return []
    references = {}
    if answers.is_file():
        for _, row in _csv_rows(answers.read_text(encoding="utf-8")):
            if row.get("final_label") == "1_full_compliance":
                references[row["prompt"]] = row["completion"]
    rows = _csv_rows(prompts.read_text(encoding="utf-8"))
    return [
        Item.of(r["prompt"], references.get(r["prompt"])) for _, r in rows if r["label"] == "safe"
    ]


def _shared_harmful(shared: Path) -> list[Item]:
    files = [
        shared / "jailbreakbench" / "behaviors" / "harmful-behaviors.csv",
        shared / "advbench" / "harmful_behaviors.csv",
    ]
    return [item for f in files if f.is_file() for item in load_set(f)]


def _draw(items: list[Item], size: int, seed: int = 0) -> list[Item]:
    """``size`` distinct items, the same ones every time (seeded), in a stable order."""
    unique = list(dict.fromkeys(items))
    if len(unique) <= size:
        return unique
    picked = sorted(random.Random(seed).sample(range(len(unique)), size))
    return [unique[i] for i in picked]


def benign_set(path: Path | None, size: int, shared: Path = SHARED_DATA) -> list[Item]:
    """The benign gate set: ``path``, or shipped benign examples + XSTest safe prompts."""
    if path is not None:
        return load_set(path)
    shipped = load_set(SHIPPED / "benign.jsonl")
    return shipped[:size] + _draw(_shared_benign(shared), max(0, size - len(shipped)))


def harmful_set(path: Path | None, size: int, shared: Path = SHARED_DATA) -> list[Item]:
    """The harmful gate set: ``path``, or shipped harmful examples + dev harmful behaviours."""
    if path is not None:
        return load_set(path)
    shipped = load_set(SHIPPED / "harmful.jsonl")
    return shipped[:size] + _draw(_shared_harmful(shared), max(0, size - len(shipped)))


def canary_set(path: Path | None, size: int) -> list[Item]:
    """The canary set: ``path``, or the shipped canary prompts."""
    if path is not None:
        return load_set(path)
    return _draw(load_set(SHIPPED / "canaries.txt"), size)
