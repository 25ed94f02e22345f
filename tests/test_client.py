"""``overtime.client``: the API's answers turned into results or one ``ApiError``.

Against ``httpx.MockTransport`` (no stack): what each answer shape becomes. The CLI's tests
(tests/test_cli.py) and the dev stack's (tests/test_devstack.py) cover the real API.
"""

from __future__ import annotations

import json

import httpx
import pytest

from overtime.client import (
    DEMO_PAYMENT_METHOD,
    ApiError,
    AsyncOvertimeClient,
    Endpoint,
    OvertimeClient,
)

# The API client against a stub transport: no database; the PostgreSQL pass would
# repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

ENDPOINT = Endpoint("http://api.test", "admin-secret", "telephony-secret")


def test_an_error_answer_carries_status_error_and_detail() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "unknown_account", "detail": "no account 'x'"})

    with OvertimeClient(ENDPOINT, transport=httpx.MockTransport(answer)) as api:
        with pytest.raises(ApiError) as raised:
            api.state("x")
    assert (raised.value.status, raised.value.error, raised.value.detail) == (
        404,
        "unknown_account",
        "no account 'x'",
    )
    assert raised.value.message == "unknown_account: no account 'x'"


def test_an_error_without_the_apis_body_is_named_by_its_status() -> None:
    # A proxy in front of the API answers in HTML: the text is kept, not a JSON crash.
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<h1>Bad Gateway</h1>\n")

    with OvertimeClient(ENDPOINT, transport=httpx.MockTransport(answer)) as api:
        with pytest.raises(ApiError) as raised:
            api.plans()
    assert (raised.value.error, raised.value.detail) == ("http_502", "<h1>Bad Gateway</h1>")


def test_each_role_sends_its_own_token() -> None:
    seen: dict[str, str | None] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        seen[request.url.path] = request.headers.get("Authorization")
        return httpx.Response(200, json=[] if request.url.path == "/v1/plans" else {})

    with OvertimeClient(ENDPOINT, transport=httpx.MockTransport(answer)) as api:
        api.plans()
        api.state("a")
    assert seen == {"/v1/plans": None, "/v1/accounts/a/state": "Bearer admin-secret"}


async def test_ensure_account_treats_account_exists_as_already_there() -> None:
    answers = iter(
        [
            httpx.Response(201, json={"account_id": "a"}),
            httpx.Response(409, json={"error": "account_exists", "detail": "a"}),
            httpx.Response(409, json={"error": "email_taken", "detail": "a@example.com"}),
        ]
    )
    transport = httpx.MockTransport(lambda request: next(answers))
    async with AsyncOvertimeClient(ENDPOINT, transport=transport) as api:
        assert await api.ensure_account("a", email="a@example.com", plan="starter") is True
        assert await api.ensure_account("a", email="a@example.com", plan="starter") is False
        with pytest.raises(ApiError, match="email_taken"):  # another conflict is an error
            await api.ensure_account("a", email="a@example.com", plan="starter")


async def test_enable_extra_minutes_attaches_the_test_card_when_asked() -> None:
    calls: list[tuple[str, str, object]] = []
    needs_card = True

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal needs_card
        body = json.loads(request.content)
        calls.append((request.method, request.url.path, body))
        if request.url.path.endswith("/payment-method"):
            needs_card = False
            return httpx.Response(200, json={"id": body["payment_method_id"]})
        if needs_card:
            return httpx.Response(409, json={"error": "payment_method_required", "detail": "-"})
        return httpx.Response(200, json={"enabled": True, "limit_cents": 500})

    async with AsyncOvertimeClient(ENDPOINT, transport=httpx.MockTransport(answer)) as api:
        result = await api.enable_extra_minutes("a", {"limit_cents": 500})
    assert result == {"enabled": True, "limit_cents": 500}
    settings = {"enabled": True, "limit_cents": 500}
    assert calls == [
        ("PUT", "/v1/accounts/a/extra-minutes", settings),
        ("POST", "/v1/accounts/a/payment-method", {"payment_method_id": DEMO_PAYMENT_METHOD}),
        ("PUT", "/v1/accounts/a/extra-minutes", settings),
    ]


async def test_enable_extra_minutes_without_an_attach_endpoint_is_none() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/payment-method"):
            return httpx.Response(404, json={"error": "not_found", "detail": "Not Found"})
        return httpx.Response(409, json={"error": "payment_method_required", "detail": "-"})

    async with AsyncOvertimeClient(ENDPOINT, transport=httpx.MockTransport(answer)) as api:
        assert await api.enable_extra_minutes("a", {"limit_minutes": 10}) is None


def test_the_endpoint_follows_the_clis_variables() -> None:
    env = {
        "OVERTIME_HTTP_PORT": "8100",
        "OVERTIME_ADMIN_TOKEN": "a",
        "OVERTIME_TELEPHONY_TOKEN": "t",
    }
    assert Endpoint.from_env(env) == Endpoint("http://127.0.0.1:8100", "a", "t")
    assert Endpoint.from_env({"OVERTIME_API_URL": "https://api.example/"}).base_url == (
        "https://api.example"
    )
