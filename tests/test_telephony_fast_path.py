"""The telephony fast path answers every request exactly as the FastAPI route does.

``TelephonyFastPath`` (starter/api.py) answers ``POST /v1/calls/authorize`` and
``/v1/calls/usage`` itself when they are well formed and authorised, and hands anything
else to the route. Each request below goes to two apps built alike, one with the fast
path and one without (its routes table emptied), and the answers must match byte for
byte: status, headers, body. The account workflow is a stub (no Temporal needed): what is
compared is the HTTP layer around the same service code.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import starter.api
from overtime.settings import Settings
from starter.admission import Admission
from starter.api import TelephonyFastPath, create_app
from starter.dispatcher import DispatchTimeout, WorkflowRejected
from starter.errors import ApiError
from starter.services import AccountService
from tests.conftest import ADMIN_TOKEN, TELEPHONY_TOKEN
from workflows.types import AUTHORIZE, TelephonyResult

# The fast path against a stub dispatcher (its own throwaway SQLite file); the PostgreSQL
# pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

KNOWN = "acct-1"


class StubDispatcher:
    """Answers by call id: ``refused-*`` limit reached, ``dup-*`` a duplicate report,
    ``slow-*`` a time-out, ``rejected-*`` a workflow rejection, ``boom-*`` a crash."""

    async def telephony(self, start_input: Any, request: Any, arrived: Any = None) -> Any:
        call_id = request.call_id
        if call_id.startswith("slow"):
            raise DispatchTimeout("the account workflow did not answer in time")
        if call_id.startswith("rejected"):
            raise WorkflowRejected("invalid_request", "refused by the workflow")
        if call_id.startswith("boom"):
            raise RuntimeError("unexpected")
        if request.kind == AUTHORIZE:
            if call_id.startswith("refused"):
                return TelephonyResult(AUTHORIZE, call_id, allowed=False, reason="limit_reached")
            return TelephonyResult(AUTHORIZE, call_id, allowed=True, granted_seconds=300)
        return TelephonyResult(
            request.kind, call_id, recorded=True, duplicate=call_id.startswith("dup")
        )


class StubService(AccountService):
    async def _load_for_telephony(self, account_id: str) -> Any:
        if account_id != KNOWN:
            raise ApiError(404, "unknown_account", f"no account {account_id!r}")
        return object()


def build(settings: Settings, *, fast: bool) -> FastAPI:
    with pytest.MonkeyPatch.context() as patch:
        if not fast:  # the middleware is still installed, and hands everything on
            patch.setattr(starter.api, "_FAST_ROUTES", {})
        app = create_app(settings, client=object())  # type: ignore[arg-type]
        app.state.service = StubService(settings, StubDispatcher())  # type: ignore[arg-type]
        app.state.meter = None
        # The fast path takes its routes table when the stack is built.
        app.middleware_stack = app.build_middleware_stack()
    return app


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> tuple[FastAPI, FastAPI]:
    """The same app twice: with the fast path, and with everything handed on."""
    data = tmp_path_factory.mktemp("fast-path")
    settings = Settings(
        data_dir=data,
        database_url=f"sqlite:///{data / 'unused.db'}",
        admin_token=ADMIN_TOKEN,
        telephony_token=TELEPHONY_TOKEN,
        max_call_seconds=3600,
    )
    return build(settings, fast=True), build(settings, fast=False)


@pytest.fixture
async def clients(
    apps: tuple[FastAPI, FastAPI],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, FastAPI, FastAPI]]:
    fast_app, route_app = apps
    admissions = [app.state.admission for app in apps]
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=fast_app, raise_app_exceptions=False),
            base_url="http://127.0.0.1",
        ) as fast,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=route_app, raise_app_exceptions=False),
            base_url="http://127.0.0.1",
        ) as route,
    ):
        yield fast, route, fast_app, route_app
    for app, admission in zip(apps, admissions, strict=True):
        app.state.admission = admission


TELEPHONY = {"Authorization": f"Bearer {TELEPHONY_TOKEN}", "Content-Type": "application/json"}


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


CASES: list[tuple[str, str, dict[str, str], bytes]] = [
    # answered by the fast path
    ("POST", "/v1/calls/authorize", TELEPHONY, body(account_id=KNOWN, call_id="c1")),
    ("POST", "/v1/calls/authorize", TELEPHONY, body(account_id=KNOWN, call_id="refused-1")),
    (
        "POST",
        "/v1/calls/authorize",
        TELEPHONY,
        body(account_id=KNOWN, call_id="c2", request_id="r-2"),
    ),
    ("POST", "/v1/calls/usage", TELEPHONY, body(account_id=KNOWN, call_id="c1", seconds=60)),
    ("POST", "/v1/calls/usage", TELEPHONY, body(account_id=KNOWN, call_id="dup-1", seconds=0)),
    (
        "POST",
        "/v1/calls/authorize",
        {**TELEPHONY, "Content-Type": "application/json; charset=utf-8"},
        body(account_id=KNOWN, call_id="c3"),
    ),
    (
        "POST",
        "/v1/calls/authorize",
        {**TELEPHONY, "Authorization": f"bearer   {TELEPHONY_TOKEN}  "},
        body(account_id=KNOWN, call_id="c4"),
    ),
    # errors raised while answering: the app's exception handlers
    ("POST", "/v1/calls/authorize", TELEPHONY, body(account_id="nobody", call_id="c1")),
    ("POST", "/v1/calls/usage", TELEPHONY, body(account_id=KNOWN, call_id="c", seconds=3601)),
    ("POST", "/v1/calls/authorize", TELEPHONY, body(account_id=KNOWN, call_id="slow-1")),
    (
        "POST",
        "/v1/calls/usage",
        TELEPHONY,
        body(account_id=KNOWN, call_id="rejected-1", seconds=5),
    ),
    ("POST", "/v1/calls/authorize", TELEPHONY, body(account_id=KNOWN, call_id="boom-1")),
    # handed on to the route
    ("POST", "/v1/calls/authorize", {}, body(account_id=KNOWN, call_id="c1")),
    (
        "POST",
        "/v1/calls/authorize",
        {**TELEPHONY, "Authorization": f"Bearer {ADMIN_TOKEN}"},
        body(account_id=KNOWN, call_id="c1"),
    ),
    (
        "POST",
        "/v1/calls/authorize",
        {**TELEPHONY, "Authorization": "Basic abc"},
        body(account_id=KNOWN, call_id="c1"),
    ),
    (
        "POST",
        "/v1/calls/usage",
        {**TELEPHONY, "Authorization": "Bearer wrong"},
        b"not json",
    ),
    ("POST", "/v1/calls/authorize", TELEPHONY, b"not json"),
    ("POST", "/v1/calls/authorize", TELEPHONY, b"[1, 2]"),
    ("POST", "/v1/calls/authorize", TELEPHONY, b""),
    ("POST", "/v1/calls/authorize", TELEPHONY, body(account_id=KNOWN)),
    ("POST", "/v1/calls/authorize", TELEPHONY, body(account_id=KNOWN, call_id="c", extra=1)),
    ("POST", "/v1/calls/authorize", TELEPHONY, body(account_id="bad id", call_id="c")),
    ("POST", "/v1/calls/usage", TELEPHONY, body(account_id=KNOWN, call_id="c", seconds="5")),
    ("POST", "/v1/calls/usage", TELEPHONY, body(account_id=KNOWN, call_id="c", seconds=5.5)),
    ("POST", "/v1/calls/usage", TELEPHONY, body(account_id=KNOWN, call_id="c", seconds=True)),
    ("POST", "/v1/calls/usage", TELEPHONY, body(account_id=KNOWN, call_id="c", seconds=-1)),
    (
        "POST",
        "/v1/calls/authorize",
        {**TELEPHONY, "Content-Type": "text/plain"},
        body(account_id=KNOWN, call_id="c1"),
    ),
    (
        "POST",
        "/v1/calls/authorize",
        {"Authorization": f"Bearer {TELEPHONY_TOKEN}"},
        body(account_id=KNOWN, call_id="c1"),
    ),
    (
        "POST",
        "/v1/calls/authorize",
        {**TELEPHONY, "Content-Type": "application/vnd.api+json"},
        body(account_id=KNOWN, call_id="c1"),
    ),
    ("GET", "/v1/calls/authorize", TELEPHONY, b""),
    ("PUT", "/v1/calls/usage", TELEPHONY, body(account_id=KNOWN, call_id="c1", seconds=1)),
    ("POST", "/v1/calls/authorize/", TELEPHONY, body(account_id=KNOWN, call_id="c1")),
]


def answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, list(response.headers.multi_items()), response.content


@pytest.mark.parametrize(("method", "path", "headers", "content"), CASES)
async def test_the_fast_path_answers_as_the_route_does(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, FastAPI, FastAPI],
    method: str,
    path: str,
    headers: dict[str, str],
    content: bytes,
) -> None:
    fast, route, _, _ = clients
    via_fast = await fast.request(method, path, headers=headers, content=content)
    via_route = await route.request(method, path, headers=headers, content=content)
    assert answer(via_fast) == answer(via_route)


async def test_a_shed_request_is_answered_alike(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, FastAPI, FastAPI],
) -> None:
    fast, route, fast_app, route_app = clients
    for app in (fast_app, route_app):
        app.state.admission = Admission(max_pending=0, max_pending_per_account=1, retry_after=2)
    payload = body(account_id=KNOWN, call_id="c1")
    via_fast = await fast.post("/v1/calls/authorize", headers=TELEPHONY, content=payload)
    via_route = await route.post("/v1/calls/authorize", headers=TELEPHONY, content=payload)
    assert via_fast.status_code == 503 and via_fast.json()["error"] == "overloaded"
    assert answer(via_fast) == answer(via_route)
    assert (
        fast_app.state.admission.shed
        == route_app.state.admission.shed
        == {
            "process": 1,
            "account": 0,
        }
    )


async def test_the_fast_path_answers_without_the_route(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient, FastAPI, FastAPI],
) -> None:
    """A well-formed request is answered by the fast path itself, not handed on."""
    fast, _, fast_app, _ = clients
    layer: Any = fast_app.middleware_stack
    while not isinstance(layer, TelephonyFastPath):
        layer = layer.app
    handed_on: list[str] = []
    behind = layer.app

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        handed_on.append(scope["path"])
        await behind(scope, receive, send)

    layer.app = counting
    payload = body(account_id=KNOWN, call_id="c9")
    response = await fast.post("/v1/calls/authorize", headers=TELEPHONY, content=payload)
    assert response.json() == {"allowed": True, "granted_seconds": 300}
    assert handed_on == []
    refused = await fast.post("/v1/calls/authorize", headers={}, content=payload)
    assert refused.status_code == 401
    assert handed_on == ["/v1/calls/authorize"]
