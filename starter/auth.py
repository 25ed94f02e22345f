"""Bearer-token checks: each token only for its own endpoints (401 without, 403 wrong)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Depends, Request

from overtime.settings import Settings
from starter.errors import ApiError


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def require_token(*token_names: str) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A dependency that admits a request bearing any of the named settings' tokens."""

    # Async although it never awaits: FastAPI runs a plain ``def`` dependency in the
    # thread pool (40 threads), and under a burst every telephony request queued there
    # before admission control could shed it (starter/admission.py).
    async def check(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise ApiError(401, "unauthorized", "missing bearer token")
        settings = _settings(request)
        for name in token_names:
            expected: str = getattr(settings, name)
            if hmac.compare_digest(given.encode(), expected.encode()):
                return
        raise ApiError(403, "forbidden", "this token may not use this endpoint")

    return check


admin_only = Depends(require_token("admin_token"))
telephony_only = Depends(require_token("telephony_token"))
