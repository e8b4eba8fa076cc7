"""The app factory: ``create_app(settings)`` wires routes, error mapping and the lifespan.

Nothing heavy happens at import; the lifespan starts (or adopts) the engine and always
tears it down in ``finally``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app import metrics
from app.admin import admin
from app.engine import Engine
from app.errors import ConscienceError, InvalidRequest
from app.openapi import install_openapi
from app.routes import public, v1
from app.settings import Settings
from app.state import ServerState

log = logging.getLogger("conscience")

_HTTP_TYPES = {401: "authentication_error", 404: "not_found_error", 405: "invalid_request_error"}


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """A server for ``settings``. With ``engine``, it serves that engine and does not own it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await ServerState.open(settings, engine)
        app.state.conscience = state
        try:
            yield
        finally:
            await state.close()

    app = FastAPI(title="Conscience", version="0.1.0", lifespan=lifespan)
    app.include_router(public)
    app.include_router(v1)
    app.include_router(admin)
    _install_error_handlers(app)
    install_openapi(app)
    return app


def error_response(exc: ConscienceError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The OpenAI-shaped error response for a typed error."""
    metrics.REQUEST_ERRORS.labels(str(exc.status_code)).inc()
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ConscienceError)
    async def _typed(_: Request, exc: ConscienceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"][1:]) or None
        return error_response(
            InvalidRequest(f"Invalid value for {param}: {first['msg']}", param=param)
        )

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        error = ConscienceError(str(exc.detail))
        error.status_code = exc.status_code
        error.error_type = _HTTP_TYPES.get(exc.status_code, "invalid_request_error")
        return error_response(error, exc.headers)  # e.g. Allow on a 405

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(ConscienceError(f"Internal error: {type(exc).__name__}"))
