"""The pair record: the contract between the server (producer) and the trainer (consumer).

Shape follows TRL's conversational preference format (``prompt``, ``chosen``, ``rejected``
as lists of chat messages) so an export loads with ``load_dataset("json", ...)`` as is,
plus the provenance the trainer filters on. Both ``app`` and ``trainer`` import this module.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class Message(BaseModel):
    """A chat message inside a record."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str


class PairRecord(BaseModel):
    """One flagged draft (``rejected``) with its rewrite (``chosen``) for DPO."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=64)
    created_at: float = Field(default_factory=time.time)
    prompt: list[Message] = Field(min_length=1)
    chosen: list[Message] = Field(min_length=1)
    rejected: list[Message] = Field(min_length=1)
    framework: str
    framework_version: str
    review_prompt_hash: str
    verdict: Literal["ethical", "neutral", "unethical", "unknown"]
    score: float | None = Field(None, ge=0, le=1)
    adapter_version: str | None = None
    model: str = ""
    source: Literal["server", "import"] = "server"

    def prompt_key(self) -> str:
        """A key identifying the prompt, for capping pairs per prompt."""
        return "\x1e".join(f"{m.role}\x1f{m.content}" for m in self.prompt)
