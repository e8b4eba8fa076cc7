"""The small engine interface the pipeline talks to; ``app.vllm_engine`` is the real one.

Keeping it this narrow (encode, stream a generation, first-token logprobs, adapters, health) is what
lets a scripted fake stand in for pipeline-branch unit tests while every user-visible path
also runs on the real engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter version as the engine knows it. ``name`` is unique per version."""

    name: str
    version: str
    path: Path
    int_id: int


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling options of one generation."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_tokens: int = 0
    ignore_eos: bool = False


@dataclass
class TextDelta:
    """A piece of generated text; the last one carries ``finish_reason``.

    ``token_ids`` are the piece's generated token ids and ``cached_tokens`` how many prompt
    tokens the engine served from its prefix cache (engines that cannot tell leave them empty).
    """

    text: str
    completion_tokens: int
    finish_reason: str | None = None
    token_ids: tuple[int, ...] = ()
    cached_tokens: int = 0


@dataclass
class Generation:
    """A finished generation, kept as the pieces (and token ids) it streamed in."""

    pieces: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    finish_reason: str = "stop"
    token_ids: list[int] = field(default_factory=list)
    cached_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(frozen=True)
class FirstToken:
    """Exact log-probabilities of asked token ids as the first generated token, and how many
    prompt tokens came from the prefix cache."""

    logprobs: dict[int, float]
    cached_tokens: int = 0


class Engine(Protocol):
    """What the pipeline needs from an inference engine."""

    model_name: str
    max_model_len: int
    dtype: str | None  # what the model computes in (bfloat16, float32, ...); None: unknown

    def encode_chat(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Render messages with the model's chat template (generation prompt added)."""
        ...

    def token_count(self, text: str) -> int:
        """How many tokens ``text`` takes."""
        ...

    def encode_text(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens)."""
        ...

    def decode_token(self, token_id: int) -> str:
        """The text of one token."""
        ...

    def truncate(self, text: str, max_tokens: int) -> str:
        """``text`` cut to at most ``max_tokens`` tokens (head and tail kept)."""
        ...

    def stream(
        self,
        request_id: str,
        prompt_ids: list[int],
        sampling: SamplingConfig,
        adapter: Adapter | None,
    ) -> AsyncIterator[TextDelta]:
        """Generate, yielding text deltas. Closing the iterator aborts the request."""
        ...

    def special_token_ids(self) -> frozenset[int]:
        """Ids of the tokenizer's special tokens (turn markers, end of sequence)."""
        ...

    async def first_token_logprobs(
        self, request_id: str, prompt_ids: list[int], token_ids: Sequence[int]
    ) -> FirstToken:
        """Exact log-probabilities of ``token_ids`` as the first generated token (frozen base)."""
        ...

    async def score_answer(
        self,
        request_id: str,
        messages: Sequence[dict[str, str]],
        answer: str,
        adapter: Adapter | None,
    ) -> tuple[float, int]:
        """(sum of log p(answer tokens | messages), number of answer tokens) under a policy."""
        ...

    async def load_adapter(self, adapter: Adapter) -> None:
        """Make ``adapter`` resident."""
        ...

    async def unload_adapter(self, adapter: Adapter) -> None:
        """Evict ``adapter``."""
        ...

    async def check_health(self) -> None:
        """Raise ``EngineUnavailable`` if the engine cannot serve."""
        ...
