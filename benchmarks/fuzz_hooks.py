"""Schemathesis hooks and checks for ``benchmarks/fuzz_api.py`` (``SCHEMATHESIS_HOOKS``).

Loaded inside ``st run``; configured by environment variables the runner sets:

- ``FUZZ_MODELS`` / ``FUZZ_FRAMEWORKS``: comma-separated served model names and framework
  names. Half the schema-valid bodies are steered to use them (and to carry a user message),
  so cases get past the semantic checks the schema cannot express and reach the pipeline.
- ``FUZZ_PROTECTED``: JSON list of ``"METHOD /path"`` operations this pass has no key for:
  any response below 400 from one of them fails the run (unauthenticated success).
- ``FUZZ_LOG``: a JSONL file receiving one line per call (operation, status, seconds).

Checks added to schemathesis' own: ``server_error_only_for_failed_engine`` (any 5xx but a
503 ``engine_unavailable`` fails; replaces ``not_a_server_error``) and
``protected_operation_needs_key``.
"""

from __future__ import annotations

import copy
import json
import os
import random
import threading
from typing import Any

import schemathesis

MODELS = [m for m in os.environ.get("FUZZ_MODELS", "").split(",") if m]
FRAMEWORKS = [f for f in os.environ.get("FUZZ_FRAMEWORKS", "").split(",") if f]
PROTECTED = set(json.loads(os.environ.get("FUZZ_PROTECTED", "[]")))
PROMPTS = ["Tell me about bread.", "How do I pick a lock?", "Write a haiku about foxes."]
_LOG = os.environ.get("FUZZ_LOG")
_lock = threading.Lock()


def _operation(case: Any) -> str:
    return f"{case.operation.method.upper()} {case.operation.path}"


def _steer(body: dict, model: str, framework: str, prompt: str) -> dict:
    body = copy.deepcopy(body)
    if "model" in body:
        body["model"] = model
    if "framework" in body:
        body["framework"] = framework
    if isinstance(body.get("conscience"), dict) and "framework" in body["conscience"]:
        body["conscience"]["framework"] = framework
    if isinstance(body.get("messages"), list):
        body["messages"] = [*body["messages"], {"role": "user", "content": prompt}]
    return body


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Steer half the schema-valid bodies to a served model, a known framework and a user
    message (chosen from the body itself, so a seed reproduces the run). Negative cases are
    left alone: they must stay invalid."""
    meta = case.meta
    body = case.body
    if not (MODELS and FRAMEWORKS) or meta is None or not isinstance(body, dict):
        return case
    if meta.generation.mode.value != "positive":
        return case
    pick = random.Random(json.dumps(body, sort_keys=True, default=str))
    if pick.random() < 0.5:
        steered = _steer(body, pick.choice(MODELS), pick.choice(FRAMEWORKS), pick.choice(PROMPTS))
        case.body = steered
    return case


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """Log the call (one JSON line) for the runner's counts."""
    if not _LOG:
        return
    line = {
        "op": _operation(case),
        "status": response.status_code,
        "s": round(response.elapsed, 4),
    }
    with _lock, open(_LOG, "a") as f:
        f.write(json.dumps(line) + "\n")


@schemathesis.check
def server_error_only_for_failed_engine(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, except the documented 503 ``engine_unavailable`` of a failed engine."""
    if response.status_code < 500:
        return None
    try:
        code = response.json()["error"]["code"]
    except Exception:
        code = None
    if response.status_code == 503 and code == "engine_unavailable":
        return None
    raise AssertionError(f"server error {response.status_code} ({code}): {response.text[:300]}")


@schemathesis.check
def protected_operation_needs_key(ctx: Any, response: Any, case: Any) -> bool | None:
    """An operation this pass holds no key for must never answer below 400."""
    if _operation(case) in PROTECTED and response.status_code < 400:
        raise AssertionError(f"unauthenticated success: {response.status_code}")
    return None
