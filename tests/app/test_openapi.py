"""The served ``/openapi.json`` is self-contained and describes the bodies handlers parse."""

from __future__ import annotations

import httpx
import pytest
from fastapi.routing import APIRoute

from app.openapi import hoist_defs, local_refs
from app.protocol import ChatCompletionRequest, PinRequest, ReviewRequest, ScoreRequest


def resolve(document: dict, ref: str) -> object:
    """The node a local ``$ref`` (``#/a/b``) points at; KeyError if it does not exist."""
    assert ref.startswith("#/"), f"{ref} points outside the document"
    node: object = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]  # type: ignore[index]
    return node


def test_every_ref_in_the_served_document_resolves(server):
    document = httpx.get(f"{server.base_url}/openapi.json", timeout=30).json()
    refs = local_refs(document)
    assert len(refs) > 20
    for ref in refs:
        resolve(document, ref)
    assert "$defs" not in str(document)


def test_every_handler_that_parses_a_body_publishes_it(server):
    document = httpx.get(f"{server.base_url}/openapi.json", timeout=30).json()
    expected = {
        "/v1/chat/completions": ChatCompletionRequest,
        "/v1/conscience/review": ReviewRequest,
        "/v1/conscience/score": ScoreRequest,
        "/admin/adapters/pin": PinRequest,
    }
    parsing = [
        r
        for r in server.app.routes
        if isinstance(r, APIRoute) and "parse_body" in r.endpoint.__code__.co_names
    ]
    assert sorted(r.path for r in parsing) == sorted(expected)
    for route in parsing:
        (method,) = route.methods
        body = document["paths"][route.path][method.lower()]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        assert body["required"] is True
        assert schema == {"$ref": f"#/components/schemas/{expected[route.path].__name__}"}
        published = resolve(document, schema["$ref"])
        assert set(published["properties"]) == set(expected[route.path].model_fields)


def test_protected_operations_declare_their_key_and_error_body(server):
    document = httpx.get(f"{server.base_url}/openapi.json", timeout=30).json()
    schemes = document["components"]["securitySchemes"]
    assert {name: s["scheme"] for name, s in schemes.items()} == {
        "APIKey": "bearer",
        "AdminKey": "bearer",
    }
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path.startswith(("/v1/", "/admin/")):
                key = "AdminKey" if path.startswith("/admin/") else "APIKey"
                assert operation["security"] == [{key: []}], path
                error = operation["responses"]["401"]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorBody"}
            else:
                assert "security" not in operation, path


def test_hoisting_rewrites_nested_refs_and_refuses_clashing_names():
    document = {
        "paths": {
            "/x": {
                "post": {
                    "schema": {
                        "$ref": "#/$defs/A",
                        "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"type": "string"}},
                    }
                }
            }
        },
        "components": {"schemas": {"B": {"type": "string"}}},
    }
    hoisted = hoist_defs(document)
    assert hoisted["paths"]["/x"]["post"]["schema"] == {"$ref": "#/components/schemas/A"}
    assert hoisted["components"]["schemas"]["A"] == {"$ref": "#/components/schemas/B"}
    clash = {"paths": {"/y": {"schema": {"$defs": {"B": {"type": "integer"}}}}}}
    clash["components"] = {"schemas": {"B": {"type": "string"}}}
    with pytest.raises(ValueError, match="'B'"):
        hoist_defs(clash)
