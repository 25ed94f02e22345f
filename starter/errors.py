"""The one error type that reaches API clients: ``{"error": CODE, "detail": TEXT}``."""

from __future__ import annotations

from collections.abc import Mapping


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
