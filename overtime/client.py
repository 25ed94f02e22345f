"""Overtime's own HTTP API as Python calls: the one home for "call the API, check the answer".

The ``overtime`` CLI (one request per command: :class:`OvertimeClient`), its load simulator
and the dev stack's seeding (many requests at once: :class:`AsyncOvertimeClient`) all use
it. An answer of 400 or more becomes :class:`ApiError` carrying the status and the API's
``{"error", "detail"}`` body; a transport failure stays httpx's own ``TransportError`` (the
CLI reports it as "cannot reach the API"). Each request is described once (the ``_...``
functions below), so the sync and async clients cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from overtime.settings import Settings

REQUEST_TIMEOUT_SECONDS = 30.0  # above the API's dispatch deadline (20 s by default)
# The payment method the demo seeding and simulate attach when enabling extra minutes
# needs one on file (Stripe's test card; the fake Stripe server accepts it too).
DEMO_PAYMENT_METHOD = "pm_card_visa"

Json = dict[str, Any]
Role = Literal["public", "admin", "telephony"]


class ApiError(Exception):
    """The API answered 4xx/5xx; ``error`` and ``detail`` are its JSON body's fields."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail

    @property
    def message(self) -> str:
        return f"{self.error}: {self.detail}"


def setting_default(name: str) -> str:
    # Read the one default instead of instantiating Settings: a malformed unrelated
    # OVERTIME_* variable must not stop an admin from using the CLI.
    return str(Settings.model_fields[name].default)


def default_api_url(env: Mapping[str, str] = os.environ) -> str:
    """``OVERTIME_API_URL``, else the API this machine's settings start: the same
    ``OVERTIME_HTTP_HOST`` / ``OVERTIME_HTTP_PORT`` the server and ``make run`` use (an
    all-interfaces bind is reached on loopback)."""
    if env.get("OVERTIME_API_URL"):
        return env["OVERTIME_API_URL"]
    host = env.get("OVERTIME_HTTP_HOST") or setting_default("http_host")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = env.get("OVERTIME_HTTP_PORT") or setting_default("http_port")
    return f"http://{host}:{port}"


def default_admin_token(env: Mapping[str, str] = os.environ) -> str:
    return env.get("OVERTIME_ADMIN_TOKEN", setting_default("admin_token"))


def default_telephony_token(env: Mapping[str, str] = os.environ) -> str:
    return env.get("OVERTIME_TELEPHONY_TOKEN", setting_default("telephony_token"))


@dataclass(frozen=True)
class Endpoint:
    """Where the API is and which tokens to use."""

    base_url: str
    admin_token: str
    telephony_token: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Endpoint:
        """The API and tokens the CLI uses when given no flags."""
        return cls(
            default_api_url(env).rstrip("/"), default_admin_token(env), default_telephony_token(env)
        )

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def telephony(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.telephony_token}"}

    def headers(self, role: Role) -> dict[str, str]:
        if role == "admin":
            return self.admin
        if role == "telephony":
            return self.telephony
        return {}


def error_of(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
        code, detail = str(body["error"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        code, detail = f"http_{response.status_code}", response.text.strip()[:500]
    return ApiError(response.status_code, code, detail)


def checked(response: httpx.Response) -> Any:
    """The JSON body of a successful answer; :class:`ApiError` for 4xx/5xx."""
    if response.status_code >= 400:
        raise error_of(response)
    return response.json()


# --- the requests, each described once --------------------------------------------------


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    role: Role
    json: Mapping[str, Any] | None = None
    params: Mapping[str, Any] | None = None


def _account_body(
    account_id: str, email: str, plan: str, locale: str | None, timezone: str | None
) -> Json:
    body: Json = {"account_id": account_id, "email": email, "plan": plan}
    if locale:
        body["locale"] = locale
    if timezone is not None:  # "" is sent: the API refuses it rather than guess a zone
        body["timezone"] = timezone
    return body


def _create_account(
    account_id: str, email: str, plan: str, locale: str | None, timezone: str | None
) -> _Request:
    return _Request(
        "POST", "/v1/accounts", "admin", _account_body(account_id, email, plan, locale, timezone)
    )


def _extra_minutes(account_id: str, body: Mapping[str, Any]) -> _Request:
    return _Request("PUT", f"/v1/accounts/{account_id}/extra-minutes", "admin", body)


def _payment_method(account_id: str, payment_method_id: str) -> _Request:
    body = {"payment_method_id": payment_method_id}
    return _Request("POST", f"/v1/accounts/{account_id}/payment-method", "admin", body)


def _close(method: str, period: str, params: Mapping[str, Any] | None = None) -> _Request:
    return _Request(method, f"/v1/reports/close/{period}", "admin", params=params)


_PLANS = _Request("GET", "/v1/plans", "public")


def _state(account_id: str) -> _Request:
    return _Request("GET", f"/v1/accounts/{account_id}/state", "admin")


def _is(error: ApiError, status: int, code: str) -> bool:
    return error.status == status and error.error == code


# --- the clients ------------------------------------------------------------------------


class OvertimeClient:
    """Blocking client: one request at a time (the CLI's commands)."""

    def __init__(self, endpoint: Endpoint, *, transport: httpx.BaseTransport | None = None) -> None:
        # transport: e.g. httpx.MockTransport or WSGI in tests; None is the network.
        self.endpoint = endpoint
        self._http = httpx.Client(
            base_url=endpoint.base_url, timeout=REQUEST_TIMEOUT_SECONDS, transport=transport
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.close()

    def _send(self, request: _Request) -> httpx.Response:
        return self._http.request(
            request.method,
            request.path,
            json=request.json,
            params=request.params,
            headers=self.endpoint.headers(request.role),
        )

    def _call(self, request: _Request) -> Any:
        return checked(self._send(request))

    def plans(self) -> list[Json]:
        return list(self._call(_PLANS))

    def create_account(
        self,
        account_id: str,
        *,
        email: str,
        plan: str,
        locale: str | None = None,
        timezone: str | None = None,
    ) -> Json:
        return dict(self._call(_create_account(account_id, email, plan, locale, timezone)))

    def set_extra_minutes(self, account_id: str, settings: Mapping[str, Any]) -> Json:
        """``settings``: ``{"enabled": False}`` or ``enabled`` with ``limit_cents`` or
        ``limit_minutes``."""
        return dict(self._call(_extra_minutes(account_id, settings)))

    def attach_payment_method(self, account_id: str, payment_method_id: str) -> Json:
        return dict(self._call(_payment_method(account_id, payment_method_id)))

    def state(self, account_id: str) -> Json:
        return dict(self._call(_state(account_id)))

    def notifications(self, account_id: str) -> list[Json]:
        path = f"/v1/accounts/{account_id}/notifications"
        return list(self._call(_Request("GET", path, "admin")))

    def start_close(self, period: str, wait_seconds: int | None = None) -> Json:
        params = {} if wait_seconds is None else {"wait_seconds": wait_seconds}
        return dict(self._call(_close("POST", period, params)))

    def close_report_ready(self, period: str) -> bool:
        """False while the report does not exist (404); True on any other answer, which
        :meth:`close_report` then returns or raises."""
        return self._send(_close("GET", period)).status_code != 404

    def close_report(self, period: str) -> Json:
        return dict(self._call(_close("GET", period)))

    def close_report_csv(self, period: str) -> str:
        response = self._send(_close("GET", period, {"format": "csv"}))
        if response.status_code >= 400:
            raise error_of(response)
        return response.text


class AsyncOvertimeClient:
    """Concurrent client (the simulator, the dev stack's seeding); ``connections`` bounds
    the requests in flight."""

    def __init__(
        self,
        endpoint: Endpoint,
        connections: int = 20,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # transport: e.g. httpx.ASGITransport(app) in tests; None is the network.
        self.endpoint = endpoint
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self._http = httpx.AsyncClient(
            base_url=endpoint.base_url,
            timeout=REQUEST_TIMEOUT_SECONDS,
            limits=limits,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def _call(self, request: _Request) -> Any:
        response = await self._http.request(
            request.method,
            request.path,
            json=request.json,
            params=request.params,
            headers=self.endpoint.headers(request.role),
        )
        return checked(response)

    async def plans(self) -> list[Json]:
        return list(await self._call(_PLANS))

    async def create_account(
        self,
        account_id: str,
        *,
        email: str,
        plan: str,
        locale: str | None = None,
        timezone: str | None = None,
    ) -> Json:
        return dict(await self._call(_create_account(account_id, email, plan, locale, timezone)))

    async def ensure_account(
        self,
        account_id: str,
        *,
        email: str,
        plan: str,
        locale: str | None = None,
        timezone: str | None = None,
    ) -> bool:
        """Create the account; True if created now, False if it already existed (409)."""
        try:
            await self.create_account(
                account_id, email=email, plan=plan, locale=locale, timezone=timezone
            )
        except ApiError as error:
            if _is(error, 409, "account_exists"):
                return False
            raise
        return True

    async def enable_extra_minutes(self, account_id: str, limit: Mapping[str, int]) -> Json | None:
        """Enable extra minutes with ``limit`` (``limit_cents`` or ``limit_minutes``),
        attaching the test card if the API wants a payment method first.

        Returns the new settings, or None when the API requires a payment method but has no
        endpoint to attach one (404): the caller carries on without extra minutes.
        """
        request = _extra_minutes(account_id, {"enabled": True, **limit})
        try:
            return dict(await self._call(request))
        except ApiError as error:
            if not _is(error, 409, "payment_method_required"):
                raise
        try:
            await self._call(_payment_method(account_id, DEMO_PAYMENT_METHOD))
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return dict(await self._call(request))

    async def set_password(self, account_id: str, password: str) -> None:
        """The account's web-app login password (204, no body)."""
        path = f"/v1/accounts/{account_id}/password"
        response = await self._http.put(
            path, json={"password": password}, headers=self.endpoint.admin
        )
        if response.status_code >= 400:
            raise error_of(response)

    async def state(self, account_id: str) -> Json:
        return dict(await self._call(_state(account_id)))

    async def authorize(self, account_id: str, call_id: str) -> Json:
        """Ask for (more) seconds of a call, as the telephony backend does."""
        body = {"account_id": account_id, "call_id": call_id}
        return dict(await self._call(_Request("POST", "/v1/calls/authorize", "telephony", body)))

    async def report_usage(self, account_id: str, call_id: str, seconds: int) -> Json:
        """Report the seconds a call really lasted (``duplicate`` when already reported)."""
        body = {"account_id": account_id, "call_id": call_id, "seconds": seconds}
        return dict(await self._call(_Request("POST", "/v1/calls/usage", "telephony", body)))
