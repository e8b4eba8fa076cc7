"""HTTP endpoints: thin handlers that parse, call the pipeline and shape the response."""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import Awaitable
from contextlib import aclosing
from typing import TypeVar

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel, ValidationError

from app import metrics
from app.errors import AuthenticationFailed, InvalidRequest, PayloadTooLarge, UnknownModel
from app.openapi import errors, request_body
from app.pipeline import Outcome, Plan
from app.policy import CURRENT, AdapterChoice
from app.protocol import (
    AnswerScore,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ModelCard,
    ModelList,
    ResponseMessage,
    ReviewRequest,
    ReviewResponse,
    ScoreRequest,
    ScoreResponse,
    Usage,
    as_chat,
)
from app.settings import Mode
from app.state import ServerState
from app.streaming import ChunkWriter, ClosingStreamingResponse, live, replay

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
DISCONNECT_POLL_S = 0.25


def state_of(request: Request) -> ServerState:
    return request.app.state.conscience


API_KEY = HTTPBearer(
    scheme_name="APIKey", auto_error=False, description="Needed when --api-keys is set."
)


def require_api_key(request: Request, _: object = Security(API_KEY)) -> None:
    """401 unless API keys are off or the bearer token is one of them.

    ``API_KEY`` only documents the scheme in the OpenAPI document; the header is read here.
    """
    keys = state_of(request).settings.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not any(
        hmac.compare_digest(token.strip().encode(), key.encode()) for key in keys
    ):
        raise AuthenticationFailed("Missing or invalid API key (Authorization: Bearer <key>).")


public = APIRouter()
v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=errors(401))


@public.get("/health")
async def health() -> dict:
    """Alive: the process answers."""
    return {"status": "ok"}


@public.get("/ready", responses=errors(503))
async def ready(request: Request) -> dict:
    """Ready: the engine is loaded and can generate (503 otherwise)."""
    await state_of(request).ready()
    return {"status": "ready"}


@public.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def prometheus_metrics() -> Response:
    """Prometheus exposition of the default registry (ours and vLLM's series)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


@v1.get("/models")
async def list_models(request: Request) -> ModelList:
    """The served model (current policy), its base, and every loaded adapter version."""
    state = state_of(request)
    name = state.served_name
    cards = [ModelCard(id=name, root=state.engine.model_name)]
    cards.append(ModelCard(id=f"{name}@base", root=state.engine.model_name, parent=name))
    if state.adapters is not None:
        cards += [ModelCard(id=f"{name}@{v}", parent=name) for v in sorted(state.adapters.loaded)]
    return ModelList(data=cards)


def adapter_choice(state: ServerState, model: str) -> AdapterChoice:
    """``name`` → current policy; ``name@base`` or ``base`` → no adapter; ``name@VERSION``."""
    name, _, version = model.partition("@")
    if model == state.served_name:
        return CURRENT
    if model == "base" or (name == state.served_name and version == "base"):
        return None
    if name == state.served_name and version and state.adapters is not None:
        return state.adapters.resolve(version)
    raise UnknownModel(
        f"The model {model!r} does not exist. Available: {state.served_name}, "
        f"{state.served_name}@base, {state.served_name}@<loaded version>.",
        param="model",
    )


@v1.post(
    "/conscience/review",
    openapi_extra=request_body(ReviewRequest),
    responses=errors(400, 413, 503),
)
async def review_answer(request: Request) -> ReviewResponse:
    """The conscience's verdict on a given answer, under the frozen base (judge only)."""
    state = state_of(request)
    body = parse_body(ReviewRequest, await read_body(request, state.settings.max_body_bytes))
    messages = as_chat(body.messages)
    framework, review, elapsed_ms = await until_disconnect(
        request,
        state.pipeline.judge(f"review-{uuid.uuid4().hex}", messages, body.answer, body.framework),
    )
    judged = review.judgement
    return ReviewResponse(
        verdict=review.verdict,
        score=review.score,
        probabilities=judged.probabilities if judged else None,
        calibration=judged.profile if judged else None,
        raw_score=judged.raw_score if judged else None,
        readout_score=judged.readout_score if judged else None,
        framework=framework.name,
        framework_version=framework.version,
        framework_hash=framework.prompt_hash,
        review_layout=(review.layout or state.settings.review_layout).value,
        latency_ms=round(elapsed_ms, 3),
        review_error=review.error,
    )


@v1.post(
    "/conscience/score",
    openapi_extra=request_body(ScoreRequest),
    responses=errors(400, 404, 413, 503),
)
async def score_answers(request: Request) -> ScoreResponse:
    """Log-probabilities of given answers to a conversation under the chosen policy."""
    state = state_of(request)
    body = parse_body(ScoreRequest, await read_body(request, state.settings.max_body_bytes))
    choice = adapter_choice(state, body.model)
    messages = as_chat(body.messages)
    async with state.policy.use(choice) as adapter:
        scores = []
        for i, answer in enumerate(body.answers):
            logprob, tokens = await state.engine.score_answer(
                f"score-{uuid.uuid4().hex}-{i}", messages, answer, adapter
            )
            scores.append(AnswerScore(logprob=logprob, tokens=tokens))
    version = adapter.version if adapter else None
    return ScoreResponse(model=body.model, adapter=version, scores=scores)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes.")
    return bytes(body)


def parse_body(model: type[M], body: bytes) -> M:
    """Validate the body; the first problem becomes a 400 naming its parameter."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        if first["type"] == "json_invalid":
            raise InvalidRequest(f"Request body is not valid JSON: {first['msg']}") from None
        raise InvalidRequest(
            f"Invalid value for {param or 'body'}: {first['msg']}", param=param
        ) from None


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; cancel it (aborting engine requests) if the client goes away."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            raise asyncio.CancelledError("client disconnected")


async def _collect(state: ServerState, plan: Plan) -> Outcome:
    events = state.pipeline.execute(plan)
    async with aclosing(events):
        async for event in events:
            if isinstance(event, Outcome):
                return event
    raise RuntimeError("pipeline ended without an outcome")


@v1.post(
    "/chat/completions",
    response_model=ChatCompletion,
    openapi_extra=request_body(ChatCompletionRequest),
    responses={
        **errors(400, 403, 404, 413, 503),
        200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE if stream"},
    },
)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions through the conscience pipeline."""
    state = state_of(request)
    body = parse_body(
        ChatCompletionRequest, await read_body(request, state.settings.max_body_bytes)
    )
    choice = adapter_choice(state, body.model)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    plan = state.pipeline.plan(body, completion_id)
    plan.adapter = choice
    started = time.perf_counter()
    metrics.IN_FLIGHT.inc()
    try:
        if body.stream:
            return await _stream(request, state, plan, body, completion_id)
        outcome = await until_disconnect(request, _collect(state, plan))
        return _json_response(outcome, state.served_name, completion_id)
    finally:
        metrics.IN_FLIGHT.dec()
        metrics.REQUEST_LATENCY.labels(plan.mode.value, str(body.stream).lower()).observe(
            time.perf_counter() - started
        )


async def _stream(
    request: Request, state: ServerState, plan: Plan, body: ChatCompletionRequest, cid: str
) -> ClosingStreamingResponse:
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    writer = ChunkWriter(cid, state.served_name, include_usage)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if plan.mode is Mode.off:
        headers["X-Conscience-Verdict"] = "unknown"
        events = live(writer, state.pipeline.execute(plan))
    else:
        # Nothing unreviewed may reach the client: finish the review first, then replay.
        outcome = await until_disconnect(request, _collect(state, plan))
        headers["X-Conscience-Verdict"] = outcome.report.verdict.value
        events = replay(writer, outcome)
    return ClosingStreamingResponse(events, media_type="text/event-stream", headers=headers)


def _json_response(outcome: Outcome, model: str, cid: str) -> JSONResponse:
    answer = outcome.answer
    completion = ChatCompletion(
        id=cid,
        model=model,
        choices=[
            Choice(message=ResponseMessage(content=answer.text), finish_reason=answer.finish_reason)
        ],
        usage=Usage(
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            total_tokens=outcome.prompt_tokens + answer.completion_tokens,
        ),
        conscience=outcome.report,
    )
    return JSONResponse(
        completion.model_dump(mode="json"),
        headers={"X-Conscience-Verdict": outcome.report.verdict.value},
    )
