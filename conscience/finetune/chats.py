"""Chat JSONL task data (``{"messages": [...]}`` per line), as the EM subsets are written."""

from __future__ import annotations

import json
from pathlib import Path


class ChatDataError(ValueError):
    """A chat file cannot be used; the message says where and why."""


def load_chats(path: Path, limit: int | None = None) -> list[list[dict[str, str]]]:
    """Chats whose last message is the assistant's answer (at most ``limit``, file order)."""
    chats = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ChatDataError(f"{path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            messages = json.loads(line)["messages"]
            chat = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
        except (ValueError, KeyError, TypeError) as exc:
            raise ChatDataError(f"{path}:{number}: not a chat row ({exc})") from exc
        if len(chat) < 2 or chat[-1]["role"] != "assistant":
            raise ChatDataError(f"{path}:{number}: the last message must be the assistant's")
        chats.append(chat)
        if limit is not None and len(chats) == limit:
            break
    if not chats:
        raise ChatDataError(f"{path}: no chats")
    return chats


def write_chats(path: Path, chats: list[list[dict[str, str]]]) -> None:
    """Write chats as JSONL (the same format ``load_chats`` reads)."""
    text = "".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in chats)
    Path(path).write_text(text)
