"""Bad input and wrong tokens: a 4xx with {"error", "detail"}, and nothing recorded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from overtime.db import session_scope
from overtime.models import Account, SettingsChange, UsageEntry
from tests.conftest import Api


def recorded(api: Api, account: str) -> tuple[int, int]:
    with session_scope(api.settings.resolved_database_url()) as session:
        usage = session.exec(select(UsageEntry).where(UsageEntry.account_id == account)).all()
        changes = session.exec(
            select(SettingsChange).where(SettingsChange.account_id == account)
        ).all()
    return len(usage), len(changes)


def assert_error(response: Any, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["detail"]
    if code:
        assert body["error"] == code, body


@pytest.fixture
async def account(api: Api) -> str:
    return await api.create_account()


async def test_tokens_are_required_and_scoped(api: Api, account: str) -> None:
    telephony_body = {"account_id": account, "call_id": "c1"}
    assert_error(
        await api.anonymous.post("/v1/calls/authorize", json=telephony_body), 401, "unauthorized"
    )
    assert_error(await api.admin.post("/v1/calls/authorize", json=telephony_body), 403, "forbidden")
    assert_error(await api.anonymous.get(f"/v1/accounts/{account}/state"), 401)
    assert_error(await api.telephony.get(f"/v1/accounts/{account}/state"), 403)
    assert_error(
        await api.telephony.put(f"/v1/accounts/{account}/extra-minutes", json={"enabled": False}),
        403,
    )
    assert_error(
        await api.anonymous.post(
            "/v1/calls/usage",
            json={**telephony_body, "seconds": 1},
            headers={"Authorization": "Bearer nope"},
        ),
        403,
    )
    assert (await api.state(account))["used_seconds"] == 0
    assert recorded(api, account) == (0, 0)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"enabled": True}, "invalid_limit"),
        ({"enabled": True, "limit_cents": 100, "limit_minutes": 5}, "invalid_limit"),
        ({"enabled": True, "limit_cents": 0}, "invalid_limit"),
        ({"enabled": True, "limit_cents": -100}, "invalid_limit"),
        ({"enabled": True, "limit_minutes": 0}, "invalid_limit"),
        ({"enabled": True, "limit_cents": 10**12}, "invalid_limit"),
        ({"enabled": True, "limit_minutes": 10**9}, "invalid_limit"),
        ({"enabled": True, "limit_cents": 12.5}, "invalid_request"),
        ({"enabled": True, "limit_cents": "5000"}, "invalid_request"),
        ({"enabled": "yes", "limit_cents": 5000}, "invalid_request"),
        ({"enabled": True, "limit_cents": 5000, "surprise": 1}, "invalid_request"),
        ({}, "invalid_request"),
    ],
)
async def test_bad_limits_are_refused(api: Api, account: str, body: dict, code: str) -> None:
    response = await api.admin.put(f"/v1/accounts/{account}/extra-minutes", json=body)
    assert_error(response, 422, code)
    state = await api.state(account)
    assert (state["enabled"], state["limit_cents"], state["limit_minutes"]) == (False, None, None)
    assert recorded(api, account) == (0, 0)


@pytest.mark.parametrize(
    "body",
    [
        {"call_id": "c1", "seconds": -1},
        {"call_id": "c1", "seconds": 86_401},
        {"call_id": "c1", "seconds": 10**15},
        {"call_id": "c1", "seconds": 1.5},
        {"call_id": "c1", "seconds": "60"},
        {"call_id": "c1"},
        {"call_id": "", "seconds": 10},
        {"call_id": "x" * 500, "seconds": 10},
        {"call_id": "../etc", "seconds": 10},
    ],
)
async def test_bad_usage_reports_are_refused(api: Api, account: str, body: dict) -> None:
    response = await api.telephony.post("/v1/calls/usage", json={"account_id": account, **body})
    assert_error(response, 422)
    assert (await api.state(account))["used_seconds"] == 0
    assert recorded(api, account) == (0, 0)


async def test_unknown_accounts_are_404(api: Api) -> None:
    for response in (
        await api.telephony.post(
            "/v1/calls/authorize", json={"account_id": "ghost", "call_id": "c"}
        ),
        await api.telephony.post(
            "/v1/calls/usage", json={"account_id": "ghost", "call_id": "c", "seconds": 1}
        ),
        await api.admin.get("/v1/accounts/ghost/state"),
        await api.admin.get("/v1/accounts/ghost/notifications"),
        await api.admin.put("/v1/accounts/ghost/extra-minutes", json={"enabled": False}),
    ):
        assert_error(response, 404, "unknown_account")


async def test_account_creation_refusals(api: Api, account: str) -> None:
    base = {"account_id": "new-one", "email": "a@example.com", "plan": "starter"}
    assert_error(
        await api.admin.post("/v1/accounts", json={**base, "plan": "platinum"}), 422, "unknown_plan"
    )
    assert_error(
        await api.admin.post("/v1/accounts", json={**base, "timezone": "Mars/Olympus"}), 422
    )
    assert_error(await api.admin.post("/v1/accounts", json={**base, "email": "not-an-email"}), 422)
    assert_error(await api.admin.post("/v1/accounts", json={**base, "locale": "fr"}), 422)
    assert_error(
        await api.admin.post("/v1/accounts", json={**base, "account_id": account}),
        409,
        "account_exists",
    )
    assert_error(await api.admin.get("/v1/accounts/new-one/state"), 404)


@pytest.mark.parametrize(
    "timezone",
    [
        "",
        " ",
        "localtime",
        "posixrules",
        "Factory",
        "/etc/localtime",
        "../../../etc/localtime",
        "Europe/Berlin ",
        "europe/berlin",
        "posix/Europe/Berlin",
        "Mars/Olympus",
    ],
)
async def test_only_real_time_zone_names(api: Api, timezone: str) -> None:
    account_id = f"tz-{uuid.uuid4().hex[:10]}"
    body = {"account_id": account_id, "email": f"{account_id}@example.com", "plan": "starter"}
    assert_error(
        await api.admin.post("/v1/accounts", json={**body, "timezone": timezone}),
        422,
        "invalid_timezone",
    )
    assert_error(await api.admin.get(f"/v1/accounts/{account_id}/state"), 404)


async def test_time_zone_absent_takes_the_default_null_is_refused(api: Api) -> None:
    account_id = f"tz-{uuid.uuid4().hex[:10]}"
    body = {"account_id": account_id, "email": f"{account_id}@example.com", "plan": "starter"}
    assert_error(await api.admin.post("/v1/accounts", json={**body, "timezone": None}), 422)
    created = await api.admin.post("/v1/accounts", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["timezone"] == api.settings.default_timezone
    other = f"tz-{uuid.uuid4().hex[:10]}"
    tokyo = await api.admin.post(
        "/v1/accounts",
        json={
            "account_id": other,
            "email": f"{other}@example.com",
            "plan": "starter",
            "timezone": "Asia/Tokyo",
        },
    )
    assert tokyo.status_code == 201 and tokyo.json()["timezone"] == "Asia/Tokyo"
    assert (await api.state(other))["period_start"].endswith("+09:00")


async def test_account_ids_and_emails_are_unique_whatever_their_case(api: Api) -> None:
    suffix = uuid.uuid4().hex[:8]
    account_id, email = f"SEC-A1-{suffix}", f"Owner.{suffix}@Example.com"
    body = {"account_id": account_id, "email": email, "plan": "starter"}
    assert (await api.admin.post("/v1/accounts", json=body)).status_code == 201
    twin_id = await api.admin.post(
        "/v1/accounts",
        json={**body, "account_id": account_id.lower(), "email": f"other.{suffix}@example.com"},
    )
    assert_error(twin_id, 409, "account_exists")
    assert account_id in twin_id.json()["detail"]
    for taken in (email, email.lower(), email.upper()):
        answer = await api.admin.post(
            "/v1/accounts", json={**body, "account_id": f"other-{suffix}", "email": taken}
        )
        assert_error(answer, 409, "email_taken")
    # Look-ups stay exact: the lower-case id is not an alias of the account.
    assert_error(await api.admin.get(f"/v1/accounts/{account_id.lower()}/state"), 404)
    assert (await api.admin.get(f"/v1/accounts/{account_id}/state")).status_code == 200
    # The database holds the rule too (migration 0006), not only the check in code.
    with session_scope(api.settings.resolved_database_url()) as session:
        session.add(
            Account(
                account_id=account_id.lower(),
                email=f"direct.{suffix}@example.com",
                plan="starter",
                created_at=datetime.now(UTC),
            )
        )
        with pytest.raises(IntegrityError):
            session.commit()


@pytest.mark.parametrize(
    "email",
    [
        " padded@example.com",
        "padded@example.com ",
        "Jane Doe <jane@example.com>",
        "<jane@example.com>",
        "tab\t@example.com",
    ],
)
async def test_emails_are_refused_not_silently_changed(api: Api, email: str) -> None:
    account_id = f"em-{uuid.uuid4().hex[:10]}"
    answer = await api.admin.post(
        "/v1/accounts",
        json={"account_id": account_id, "email": email, "plan": "starter"},
    )
    assert_error(answer, 422, "invalid_request")
    assert "email" in answer.json()["detail"]
    assert_error(await api.admin.get(f"/v1/accounts/{account_id}/state"), 404)


async def test_account_schema_in_openapi(api: Api) -> None:
    spec = (await api.anonymous.get("/openapi.json")).json()
    schema = spec["components"]["schemas"]["AccountIn"]["properties"]
    assert schema["timezone"]["type"] == "string" and "anyOf" not in schema["timezone"]
    assert "IANA" in schema["timezone"]["description"]
    assert "display name" in schema["email"]["description"]


async def test_malformed_json_is_a_422(api: Api, account: str) -> None:
    response = await api.telephony.post(
        "/v1/calls/usage", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 422, "invalid_request")


async def test_plans_and_openapi(api: Api) -> None:
    plans = (await api.anonymous.get("/v1/plans")).json()
    assert {p["plan"] for p in plans} >= {"free", "starter", "business"}
    free = next(p for p in plans if p["plan"] == "free")
    assert free["monthly_fee_cents"] == 0
    spec = (await api.anonymous.get("/openapi.json")).json()
    for path in (
        "/healthz",
        "/v1/plans",
        "/v1/accounts",
        "/v1/accounts/{account_id}/extra-minutes",
        "/v1/calls/authorize",
        "/v1/calls/usage",
        "/v1/accounts/{account_id}/state",
        "/v1/accounts/{account_id}/notifications",
    ):
        assert path in spec["paths"], path


async def test_health_reports_each_dependency(api: Api) -> None:
    response = await api.anonymous.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("status", "temporal", "worker", "database", "down")} == {
        "status": "ok",
        "temporal": True,
        "worker": True,
        "database": True,
        "down": [],
    }
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "temporal": True,
        "worker": True,
        "database": True,
    }


async def test_a_streamed_oversized_body_is_cut_off(api: Api, account: str) -> None:
    """No Content-Length (chunked): the limit is counted while the body streams in."""

    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"account_id": "' + account.encode() + b'", "call_id": "c", "seconds": 1, "pad": "'
        for _ in range(40):
            yield b"x" * 65_536
        yield b'"}'

    response = await api.telephony.post(
        "/v1/calls/usage", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "body_too_large")
    assert (await api.state(account))["used_seconds"] == 0
