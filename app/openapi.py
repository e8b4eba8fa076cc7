"""The OpenAPI document: the request bodies handlers parse themselves, error bodies, keys.

Handlers read and validate their own bodies (size limit first, OpenAI-shaped 400s), so
FastAPI cannot see the request models: ``request_body(Model)`` publishes one through
``openapi_extra``. Pydantic puts nested models under a ``$defs`` beside the schema, which
no reference can reach from the OpenAPI document's root; ``install_openapi(app)`` hoists
every ``$defs`` into ``components/schemas`` and rewrites ``#/$defs/X`` references to
``#/components/schemas/X``, so every ``$ref`` resolves inside the document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

COMPONENTS = "#/components/schemas/"
_LOCAL_DEFS = "#/$defs/"


class ErrorDetail(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail


_WHY = {
    400: "Invalid request: malformed JSON, a value out of bounds, context too long.",
    401: "Missing or invalid bearer key.",
    403: "Forbidden: an option the operator disallows, or the admin API is disabled.",
    404: "Unknown model or adapter version.",
    409: "The adapter version failed validation or loading.",
    413: "Request body larger than the server's limit.",
    503: "The engine failed or is not ready, or a fail-closed review failed.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting the OpenAI-shaped error body for ``statuses``."""
    return {status: {"model": ErrorBody, "description": _WHY[status]} for status in statuses}


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` publishing ``model`` as the required JSON request body."""
    refs, defs = models_json_schema([(model, "validation")], ref_template=_LOCAL_DEFS + "{model}")
    schema = {**refs[(model, "validation")], **defs}  # {"$ref": "#/$defs/Model", "$defs": ...}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def hoist_defs(document: dict[str, Any]) -> dict[str, Any]:
    """Move every nested ``$defs`` into ``components/schemas``; rewrite references to them.

    Raises ``ValueError`` if two different schemas claim one component name.
    """
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        found = {k: walk(v) for k, v in node.pop("$defs", {}).items()}
        for name, schema in found.items():
            if schemas.setdefault(name, schema) != schema:
                raise ValueError(f"two different schemas named {name!r} in the OpenAPI document")
        out = {k: walk(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(_LOCAL_DEFS):
            out["$ref"] = COMPONENTS + ref[len(_LOCAL_DEFS) :]
        return out

    document["paths"] = walk(document.get("paths", {}))
    for name in list(schemas):
        schemas[name] = walk(schemas[name])
    return document


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the hoisted document (built once, then cached)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = hoist_defs(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def local_refs(document: Any) -> list[str]:
    """Every ``$ref`` in ``document`` (for checks that each one resolves)."""
    if isinstance(document, list):
        return [ref for item in document for ref in local_refs(item)]
    if not isinstance(document, dict):
        return []
    own = [document["$ref"]] if isinstance(document.get("$ref"), str) else []
    return own + [ref for value in document.values() for ref in local_refs(value)]
