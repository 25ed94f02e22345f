"""The one error type that reaches API clients: ``{"error": CODE, "detail": TEXT}``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def unavailable(detail: str, retry_after: int) -> ApiError:
    """503 ``unavailable``: the workflow did not answer in time; try again after a while."""
    return ApiError(503, "unavailable", detail, headers={"Retry-After": str(retry_after)})


async def send_error(
    send: Any, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> None:
    """The same shape from raw ASGI code (middleware and the server's protocol, which
    answer before FastAPI's exception handlers are reached)."""
    body = json.dumps({"error": code, "detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
