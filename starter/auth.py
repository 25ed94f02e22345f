"""Bearer-token checks: each token only for its own endpoints (401 without, 403 wrong).

Three kinds of bearer token reach the API:

* the telephony token (``/v1/calls/*``) and the admin token (everything else under
  ``/v1``), fixed secrets from the settings, compared in constant time;
* a customer's access token from ``POST /v1/auth/token`` (the mobile app,
  ``starter/customer_tokens.py``), good for ``/v1/me/*`` only, and only for its own
  account (the account is the token's, never a path parameter).

A valid customer token on an admin or telephony endpoint is 403: ``web_app_only`` (with
the web app's page) when the request would change what the web app manages (extra
minutes, payment details, the plan, alerts), ``forbidden`` otherwise. Only tokens with
the customer prefix are looked up, so the telephony hot path never queries the database.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from overtime.settings import Settings
from starter import customer_tokens
from starter.customer_tokens import Customer
from starter.errors import ApiError

# The last path segment of the admin routes that change what the customer manages in
# the web app, and the web app's page for each (relative to OVERTIME_PUBLIC_URL).
WEB_APP_PAGES: dict[str, tuple[str, str]] = {
    "extra-minutes": ("/app/extra-minutes", "extra minutes and their limit"),
    "payment-setup": ("/app/payment", "payment details"),
    "payment-method": ("/app/payment", "payment details"),
    "plan": ("/app", "the plan"),
    "alerts": ("/app", "alert thresholds"),
}
CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class DetailedApiError(ApiError):
    """An error whose answer has fields beyond ``error`` and ``detail`` (``extra``)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status, code, detail, headers)
        self.extra = dict(extra or {})


class WebAppOnly(DetailedApiError):
    """403 ``web_app_only``: the mobile app shows these settings; only the web app, where
    the customer signs in with the password and Stripe takes the payment details,
    changes them. The answer carries the page's absolute ``url``."""

    def __init__(self, url: str, what: str) -> None:
        super().__init__(
            403,
            "web_app_only",
            f"{what} can only be changed in the web app: {url}",
            extra={"url": url},
        )
        self.url = url


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def web_app_url(settings: Settings, page: str = "/app/extra-minutes") -> str:
    return settings.public_url.rstrip("/") + page


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header value, or None."""
    scheme, _, given = header.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return None
    return given


def _bearer(request: Request) -> str:
    given = bearer_token(request.headers.get("authorization", ""))
    if given is None:
        raise ApiError(
            401, "unauthorized", "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    return given


def is_static_token(settings: Settings, given: str, names: tuple[str, ...]) -> bool:
    return any(
        hmac.compare_digest(given.encode(), str(getattr(settings, name)).encode()) for name in names
    )


async def _check_customer(request: Request, given: str) -> customer_tokens.AccessCheck:
    settings = _settings(request)
    secret: str = request.app.state.web_settings.web_session_secret
    return await run_in_threadpool(
        customer_tokens.check_access, settings.resolved_database_url(), secret, given
    )


def _web_app_page(request: Request) -> tuple[str, str] | None:
    """The web app's page (and what it sets) when this request would change a web-app
    setting, else None."""
    if request.method not in CHANGING_METHODS:
        return None
    # The route's template ("/v1/accounts/{account_id}/plan"), not the raw path: an
    # account id that happens to be called "plan" changes nothing here.
    route = request.scope.get("route")
    template = str(getattr(route, "path", request.url.path)).rstrip("/")
    return WEB_APP_PAGES.get(template.rsplit("/", 1)[-1])


def require_token(*token_names: str) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A dependency that admits a request bearing any of the named settings' tokens."""

    # Async although it never awaits: FastAPI runs a plain ``def`` dependency in the
    # thread pool (40 threads), and under a burst every telephony request queued there
    # before admission control could shed it (starter/admission.py).
    async def check(request: Request) -> None:
        given = _bearer(request)
        settings = _settings(request)
        if is_static_token(settings, given, token_names):
            return
        if customer_tokens.looks_like(given, "access"):
            checked = await _check_customer(request, given)
            if checked.customer is not None:
                page = _web_app_page(request)
                if page is not None:
                    raise WebAppOnly(web_app_url(settings, page[0]), page[1])
                raise ApiError(
                    403, "forbidden", "a customer token may use /v1/me/* only, not this endpoint"
                )
        raise ApiError(403, "forbidden", "this token may not use this endpoint")

    return check


async def current_customer(request: Request) -> Customer:
    """The customer behind the request's access token (``/v1/me/*``). 401 without a
    valid one (``token_expired``: refresh it; ``invalid_token``: sign in again); 403 for
    the admin or telephony token (they name accounts in the path instead)."""
    given = _bearer(request)
    settings = _settings(request)
    if is_static_token(settings, given, ("admin_token", "telephony_token")):
        raise ApiError(
            403,
            "forbidden",
            "/v1/me/* takes a customer access token (POST /v1/auth/token); "
            "the admin reads accounts at /v1/accounts/{id}/…",
        )
    checked = await _check_customer(request, given)
    if checked.customer is None:
        expired = checked.problem == "expired"
        code = "token_expired" if expired else "invalid_token"
        detail = (
            "the access token has expired: get a new one with the refresh token"
            if expired
            else "the access token is unknown or was revoked: sign in again"
        )
        raise ApiError(
            401,
            code,
            detail,
            headers={
                "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{detail}"'
            },
        )
    return checked.customer


admin_only = Depends(require_token("admin_token"))
telephony_only = Depends(require_token("telephony_token"))
CurrentCustomer = Annotated[Customer, Depends(current_customer)]
