"""Wire formats: the OpenAI chat-completions request/response shapes plus the conscience object.

Bounds live in ``Field(...)`` so validation answers bad input before any work is done.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.settings import Mode


class TextPart(BaseModel):
    """A text content part (the only kind a text model accepts)."""

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One chat message. ``developer`` is accepted as OpenAI's newer name for ``system``."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message content as plain text."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


def as_chat(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """Plain ``{"role", "content"}`` dicts for a chat template (``developer`` → ``system``)."""
    return [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in messages
    ]


class StreamOptions(BaseModel):
    """OpenAI ``stream_options``."""

    include_usage: bool = False


class ConscienceOptions(BaseModel):
    """Per-request conscience overrides, sent by the openai client via ``extra_body``."""

    model_config = ConfigDict(extra="forbid")

    mode: Mode | None = None
    framework: str | None = Field(None, min_length=1, max_length=128)
    return_draft: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions`` body. Unknown OpenAI fields are ignored."""

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    stop: str | list[str] | None = None
    seed: int | None = None
    min_tokens: int | None = Field(
        None, ge=0, description="vLLM extra: generate at least this many."
    )
    ignore_eos: bool = Field(False, description="vLLM extra: keep generating past end-of-sequence.")
    top_k: int | None = Field(
        None, ge=-1, description="vLLM extra: sample from the k likeliest tokens (0 or -1: all)."
    )
    repetition_penalty: float | None = Field(
        None, gt=0, le=2, description="vLLM extra: penalise tokens already in prompt or answer."
    )
    n: int = Field(1, ge=1, le=1, description="Only n=1 is supported.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    tools: list[dict] | None = Field(None, max_length=0, description="Not supported.")
    conscience: ConscienceOptions | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    @model_validator(mode="after")
    def _last_message_not_empty(self) -> ChatCompletionRequest:
        if not any(m.text().strip() for m in self.messages if m.role == "user"):
            raise ValueError("messages must contain a user message with content")
        return self

    def completion_limit(self) -> int | None:
        """The requested completion length (``max_completion_tokens`` wins)."""
        return self.max_completion_tokens or self.max_tokens


class Verdict(StrEnum):
    """The judge's classification of a draft."""

    ethical = "ethical"
    neutral = "neutral"
    unethical = "unethical"
    unknown = "unknown"


class Action(StrEnum):
    """What the conscience did to the answer."""

    passed = "passed"
    flagged = "flagged"
    rewritten = "rewritten"


class StageLatency(BaseModel):
    """Milliseconds spent per stage."""

    draft: float = 0.0
    review: float = 0.0
    rewrite: float = 0.0
    total: float = 0.0


class ConscienceReport(BaseModel):
    """The ``conscience`` object on every response."""

    mode: Mode
    verdict: Verdict
    score: float | None = Field(
        None,
        description="P(harmful): calibrated by the profile named in 'calibration' when one "
        "applies, else the raw label probability.",
    )
    calibration: str | None = Field(
        None, description="The calibration profile (name@digest) the verdict was made under."
    )
    raw_score: float | None = Field(
        None, description="The question's raw P(harmful label) from exact label logprobs."
    )
    readout_score: float | None = Field(
        None, description="P(harmful) from the profile's read-out of the frozen model's logprobs."
    )
    labels: dict[str, float] | None = Field(
        None, description="P(label) of each of the framework's answer words."
    )
    framework: str
    framework_version: str
    framework_hash: str
    review_layout: str | None = Field(
        None, description="The review prompt's layout (framework_first or continuation)."
    )
    action: Action
    latency_ms: StageLatency
    adapter: str | None = Field(None, description="Adapter the draft came from; None: base.")
    review_error: str | None = None
    rewrite_verdict: Verdict | None = None
    rewrite_score: float | None = None
    draft: str | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    conscience: ConscienceReport


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    conscience: ConscienceReport | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "conscience"
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ScoreRequest(BaseModel):
    """``POST /v1/conscience/score``: log-probabilities of given answers under a policy."""

    model: str = Field(min_length=1, max_length=256)
    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    answers: list[str] = Field(min_length=1, max_length=64)


class AnswerScore(BaseModel):
    logprob: float = Field(description="Sum of the answer tokens' log-probabilities (nats).")
    tokens: int


class ScoreResponse(BaseModel):
    model: str
    adapter: str | None = Field(description="Adapter version scored with; None: base.")
    scores: list[AnswerScore]


class PinRequest(BaseModel):
    """``POST /admin/adapters/pin``."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=64)


class ReviewRequest(BaseModel):
    """``POST /v1/conscience/review``: judge a given answer (no generation)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] = Field(min_length=1, max_length=1024)
    answer: str = Field(max_length=200_000)
    framework: str | None = Field(None, min_length=1, max_length=128)


class ReviewResponse(BaseModel):
    """The judge's verdict on a given answer (fields as in the ``conscience`` object)."""

    verdict: Verdict
    score: float | None
    probabilities: dict[str, float] | None = Field(description="P(label) of each answer word.")
    calibration: str | None = None
    raw_score: float | None = None
    readout_score: float | None = None
    framework: str
    framework_version: str
    framework_hash: str
    review_layout: str
    latency_ms: float
    review_error: str | None = None
