"""Server-sent events in the OpenAI chunk format, ending with ``data: [DONE]``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing

from fastapi.responses import StreamingResponse

from app.engine import TextDelta
from app.errors import ConscienceError
from app.pipeline import Outcome
from app.protocol import ChatCompletionChunk, ChunkChoice, Delta, Usage

DONE = "data: [DONE]\n\n"


def sse(payload: dict) -> str:
    """One SSE event."""
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def chunk_event(chunk: ChatCompletionChunk) -> str:
    """A chunk as an event: unset optional fields left out, the conscience object complete."""
    payload = chunk.model_dump(mode="json", exclude_none=True)
    if chunk.conscience is not None:
        payload["conscience"] = chunk.conscience.model_dump(mode="json")
    return sse(payload)


class ChunkWriter:
    """Builds the chunks of one streamed completion."""

    def __init__(self, completion_id: str, model: str, include_usage: bool):
        self.completion_id = completion_id
        self.model = model
        self.include_usage = include_usage

    def _chunk(self, delta: Delta, finish: str | None = None, **extra) -> str:
        choice = ChunkChoice(delta=delta, finish_reason=finish)
        return chunk_event(
            ChatCompletionChunk(id=self.completion_id, model=self.model, choices=[choice], **extra)
        )

    def opening(self) -> str:
        return self._chunk(Delta(role="assistant", content=""))

    def piece(self, text: str) -> str:
        return self._chunk(Delta(content=text))

    def closing(self, outcome: Outcome) -> Iterable[str]:
        """The finish chunk (with the conscience object), the usage chunk, then [DONE]."""
        yield self._chunk(Delta(), outcome.answer.finish_reason, conscience=outcome.report)
        if self.include_usage:
            usage = Usage(
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.answer.completion_tokens,
                total_tokens=outcome.prompt_tokens + outcome.answer.completion_tokens,
            )
            yield chunk_event(
                ChatCompletionChunk(
                    id=self.completion_id,
                    model=self.model,
                    choices=[],
                    usage=usage,
                    conscience=outcome.report,
                )
            )
        yield DONE

    def error(self, exc: ConscienceError) -> Iterable[str]:
        yield sse(exc.body())
        yield DONE


async def replay(writer: ChunkWriter, outcome: Outcome) -> AsyncIterator[str]:
    """Stream a finished (reviewed) answer as chunks, one per generated piece."""
    yield writer.opening()
    for text in outcome.answer.pieces:
        if text:
            yield writer.piece(text)
    for event in writer.closing(outcome):
        yield event


async def live(
    writer: ChunkWriter, events: AsyncIterator[TextDelta | Outcome]
) -> AsyncIterator[str]:
    """Stream an unreviewed (mode ``off``) generation as it is produced."""
    yield writer.opening()
    try:
        async with aclosing(events):
            async for event in events:
                if isinstance(event, TextDelta):
                    if event.text:
                        yield writer.piece(event.text)
                else:
                    for chunk in writer.closing(event):
                        yield chunk
    except ConscienceError as exc:
        for chunk in writer.error(exc):
            yield chunk


class ClosingStreamingResponse(StreamingResponse):
    """A streaming response that always closes its body iterator.

    Starlette cancels the sending task when the client goes away but leaves the async
    generator suspended until garbage collection; closing it here runs the ``finally``
    blocks down the chain at once, which aborts the engine request.
    """

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]
