"""Admin API for adapters, behind its own key: status, pin, follow, rollback.

``admin`` is what the app includes: the ``/admin`` API, the reviewer console (``/console``,
``app.console``) and, as its lifespan, the adapter lifecycle (promotion gate and drift
monitors, ``app.lifecycle``), which starts after the server state is open.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import HTTPBearer

from app.adapters import AdapterManager, AdapterStatus
from app.console import console
from app.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from app.lifecycle import lifecycle
from app.openapi import errors, request_body
from app.protocol import PinRequest
from app.routes import parse_body, read_body, state_of

ADMIN_KEY = HTTPBearer(scheme_name="AdminKey", auto_error=False, description="--admin-key")


def require_admin_key(request: Request, _: object = Security(ADMIN_KEY)) -> None:
    """401 unless the bearer token is the admin key; 403 when no admin key is configured."""
    key = state_of(request).settings.admin_key
    if key is None:
        raise PermissionDenied("The admin API is disabled (start the server with --admin-key).")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise AuthenticationFailed("Missing or invalid admin key (Authorization: Bearer <key>).")


api = APIRouter(
    prefix="/admin", dependencies=[Depends(require_admin_key)], responses=errors(400, 401, 403)
)


def manager_of(request: Request) -> AdapterManager:
    manager = state_of(request).adapters
    if manager is None:
        raise InvalidRequest("This server does not follow an adapter registry (--adapters-dir).")
    return manager


@api.get("/adapters")
async def adapter_status(request: Request) -> AdapterStatus:
    """Current and previous versions, what is loaded, history, rejections."""
    return await manager_of(request).status()


@api.post("/adapters/pin", openapi_extra=request_body(PinRequest), responses=errors(404, 409, 413))
async def pin_adapter(request: Request) -> AdapterStatus:
    """Serve one version and stop following the manifest."""
    manager = manager_of(request)
    body = parse_body(PinRequest, await read_body(request, 4096))
    await manager.pin(body.version)
    return await manager.status()


@api.post("/adapters/follow", responses=errors(409))
async def follow_manifest(request: Request) -> AdapterStatus:
    """Resume following the manifest's current version."""
    manager = manager_of(request)
    await manager.follow()
    return await manager.status()


@api.post("/adapters/rollback", responses=errors(404, 409))
async def rollback_adapter(request: Request) -> AdapterStatus:
    """Pin the previous good version."""
    manager = manager_of(request)
    await manager.rollback()
    return await manager.status()


admin = APIRouter(lifespan=lifecycle)
admin.include_router(api)
admin.include_router(console)
