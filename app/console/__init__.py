"""The reviewer console at ``/console``, behind the admin key.

Sign-in posts the admin key once; the server answers with an HttpOnly, ``SameSite=Strict``
cookie holding an HMAC of the key (never the key), scoped to ``/console``, so the forms below
cannot be posted cross-site. ``Authorization: Bearer <admin key>`` works too. The page lists
queued pairs (filter by text, framework and review state), lets a reviewer approve, reject or
edit a chosen rewrite (``PairQueue.review``), and shows adapter versions with their gate
figures, the last canary run, and rollback / follow buttons.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections import deque
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.console import render
from app.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from app.queue import PairQueue, open_queue
from app.routes import read_body, state_of

COOKIE = "conscience_console"
LIMIT = 100
ACTIONS = {"approve": "approved", "reject": "rejected"}

console = APIRouter(prefix="/console", include_in_schema=False)


def _token(key: str) -> str:
    return hmac.new(key.encode(), b"conscience-console", hashlib.sha256).hexdigest()


def _admin_key(request: Request) -> str:
    key = state_of(request).settings.admin_key
    if key is None:
        raise PermissionDenied("The console is disabled (start the server with --admin-key).")
    return key


def _signed_in(request: Request) -> bool:
    key = _admin_key(request)
    cookie = request.cookies.get(COOKIE, "")
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    by_bearer = scheme.lower() == "bearer" and hmac.compare_digest(bearer.strip(), key)
    return by_bearer or hmac.compare_digest(cookie, _token(key))


def _queue(request: Request) -> PairQueue:
    app_state = request.app.state
    if getattr(app_state, "console_queue", None) is None:
        app_state.console_queue = open_queue(state_of(request).settings.queue)
    return app_state.console_queue


async def _form(request: Request) -> dict[str, str]:
    body = await read_body(request, state_of(request).settings.max_body_bytes)
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def _back(request: Request) -> RedirectResponse:
    query = request.url.query
    return RedirectResponse(f"/console{'?' + query if query else ''}", status_code=303)


@console.get("", response_class=HTMLResponse)
async def console_page(
    request: Request, q: str = "", framework: str = "", status: str = "pending"
) -> Response:
    """The console page (a sign-in form until the admin key was given)."""
    if not _signed_in(request):
        return HTMLResponse(render.login())
    queue = _queue(request)
    pairs, frameworks = await asyncio.to_thread(_select, queue, q, framework, status)
    manager = state_of(request).adapters
    adapters = (await manager.status()).model_dump() if manager else None
    body = (
        "<h1>Conscience reviewer console</h1>"
        "<form method='post' action='/console/logout' class='inline'>"
        "<button id='sign-out'>Sign out</button></form>"
        f"{render.pairs_table(pairs, q, framework, status, frameworks)}"
        f"{render.adapters_table(adapters)}"
    )
    return HTMLResponse(render.page("Conscience console", body))


def _select(queue: PairQueue, q: str, framework: str, status: str) -> tuple[list, list[str]]:
    """The newest ``LIMIT`` records matching the filters, with their review states."""
    needle = q.strip().lower()
    records = queue.records(include_acked=status in ("rejected", "all"))
    frameworks: set[str] = set()
    matched: deque = deque(maxlen=LIMIT * 4)
    for record in records:
        frameworks.add(record.framework)
        text = " ".join(m.content for m in [*record.prompt, *record.chosen, *record.rejected])
        if (not framework or record.framework == framework) and needle in text.lower():
            matched.append(record)
    reviews = queue.reviews([r.id for r in matched])
    picked = []
    for record in reversed(matched):
        review = reviews.get(record.id)
        if review is not None and (status == "all" or review.state == status):
            picked.append((record, review))
    return picked[:LIMIT], sorted(frameworks)


@console.post("/login")
async def sign_in(request: Request) -> Response:
    key = _admin_key(request)
    given = (await _form(request)).get("key", "")
    if not hmac.compare_digest(given.encode(), key.encode()):
        return HTMLResponse(render.login("Wrong admin key."), status_code=401)
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(
        COOKIE, _token(key), httponly=True, samesite="strict", path="/console", max_age=8 * 3600
    )
    return response


@console.post("/logout")
async def sign_out() -> Response:
    response = RedirectResponse("/console", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


def _require(request: Request) -> None:
    if not _signed_in(request):
        raise AuthenticationFailed("Sign in to the console with the admin key first.")


@console.post("/pairs/{record_id}")
async def review_pair(request: Request, record_id: str) -> Response:
    """Approve, reject or save an edited rewrite of one pair."""
    _require(request)
    form = await _form(request)
    action = form.get("action", "")
    if action not in (*ACTIONS, "save"):
        raise InvalidRequest(f"Unknown action {action!r}.", param="action")
    queue = _queue(request)
    current = (await asyncio.to_thread(queue.reviews, [record_id])).get(record_id)
    if current is None:
        raise InvalidRequest(f"No pair {record_id!r} in the queue.", param="record_id")
    record = await asyncio.to_thread(_find, queue, record_id)
    chosen = form.get("chosen")
    original = "\n".join(m.content for m in record.chosen) if record else None
    edit = chosen.replace("\r\n", "\n") if chosen is not None else None
    state = ACTIONS.get(action, current.state)
    changed = edit if edit is not None and edit != original else None
    await asyncio.to_thread(queue.review, record_id, state, chosen=changed)
    return _back(request)


def _find(queue: PairQueue, record_id: str):
    return next((r for r in queue.records(include_acked=True) if r.id == record_id), None)


@console.post("/adapters/rollback")
async def rollback(request: Request) -> Response:
    _require(request)
    manager = state_of(request).adapters
    if manager is None:
        raise InvalidRequest("This server follows no adapter registry (--adapters-dir).")
    await manager.rollback()
    return _back(request)


@console.post("/adapters/follow")
async def follow(request: Request) -> Response:
    _require(request)
    manager = state_of(request).adapters
    if manager is None:
        raise InvalidRequest("This server follows no adapter registry (--adapters-dir).")
    await manager.follow()
    return _back(request)
