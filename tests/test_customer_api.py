"""The mobile app's customer API against the running stack: sign-in with the web app's
password, short-lived access tokens, rotating refresh tokens with reuse detection,
revocation, the throttle shared with the web login, the live extra-minutes figures, the
invoices, and that a customer token changes nothing and reaches nothing but its own
``/v1/me/*`` (every route of the OpenAPI document is swept)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from alembic import command
from sqlalchemy import inspect, update
from sqlmodel import col, select
from temporalio.client import Client

from overtime.db import alembic_config, engine_for, session_scope
from overtime.models import CustomerToken, Invoice
from overtime.settings import Settings
from starter.customer_tokens import token_hash
from starter.web.config import WebSettings
from tests.conftest import Api, WorkerControl, start_api, stop_api

PASSWORD = "a long enough password"
PUBLIC_URL = "https://app.example.test"
ACCESS_TTL = 60
MAX_FAILURES = 3  # per account (the web app would ask for an emailed code from here on)
MAX_FAILURES_PER_IP = 5


@dataclass
class Mobile:
    api: Api
    web: WebSettings

    @property
    def db(self) -> str:
        return self.api.settings.resolved_database_url()

    def client(self, ip: str | None = None, token: str | None = None) -> httpx.AsyncClient:
        headers = {"X-Forwarded-For": ip or random_ip()}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.AsyncClient(base_url=self.api.base_url, timeout=30, headers=headers)


def random_ip() -> str:
    """A client address of its own per test (198.18.0.0/15, for benchmarks): the
    per-address throttle of one test never touches another's."""
    return f"198.{random.randint(18, 19)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@pytest.fixture(scope="module")
async def mobile(
    settings: Settings, temporal_client: Client, worker: WorkerControl
) -> AsyncIterator[Mobile]:
    """The API behind a "proxy" (the test client: X-Forwarded-For is believed, so each
    test has its own address), a public URL of its own, a one-minute access token and a
    small sign-in throttle without delays."""
    own = settings.model_copy(
        update={
            "trusted_proxies": ["127.0.0.1"],
            "public_url": PUBLIC_URL,
            "customer_access_token_ttl_seconds": ACCESS_TTL,
        }
    )
    server, task, api = await start_api(own, temporal_client)
    web = WebSettings(
        admin_email=f"admin-{uuid.uuid4().hex[:8]}@overtime.local",
        admin_password="the admin's own password",
        web_login_max_failures=MAX_FAILURES,
        web_login_max_failures_per_ip=MAX_FAILURES_PER_IP,
        web_login_delay_seconds=0,
    )
    server.config.app.state.web_settings = web  # type: ignore[attr-defined]
    try:
        yield Mobile(api, web)
    finally:
        await stop_api(server, task, api)


async def customer(api: Api, plan: str = "starter") -> tuple[str, str]:
    account_id = await api.create_account(plan)
    answer = await api.admin.put(f"/v1/accounts/{account_id}/password", json={"password": PASSWORD})
    assert answer.status_code == 204, answer.text
    return account_id, f"{account_id}@example.com"


async def sign_in(
    mobile: Mobile, email: str, password: str = PASSWORD, *, ip: str | None = None
) -> httpx.Response:
    async with mobile.client(ip) as client:
        return await client.post(
            "/v1/auth/token",
            data={"grant_type": "password", "username": email, "password": password},
        )


async def tokens(mobile: Mobile, email: str) -> dict[str, Any]:
    answer = await sign_in(mobile, email)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def refresh(mobile: Mobile, refresh_token: str) -> httpx.Response:
    async with mobile.client() as client:
        return await client.post(
            "/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
        )


async def get(mobile: Mobile, path: str, token: str) -> httpx.Response:
    async with mobile.client(token=token) as client:
        return await client.get(path)


def error_of(answer: httpx.Response) -> str:
    return answer.json()["error"]


# --- tokens ---------------------------------------------------------------------------------


async def test_sign_in_gives_short_lived_tokens_stored_only_as_hashes(mobile: Mobile) -> None:
    account_id, email = await customer(mobile.api)
    answer = await sign_in(mobile, email.upper())  # emails compare case-insensitively
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["account_id"] == account_id
    assert body["expires_in"] == ACCESS_TTL
    assert body["refresh_token_expires_in"] == Settings().customer_refresh_token_ttl_seconds
    assert body["access_token"].startswith("ota_") and body["refresh_token"].startswith("otr_")
    assert answer.headers["cache-control"] == "no-store"  # RFC 6749 §5.1
    # JSON works as well as the form OAuth clients send.
    async with mobile.client() as client:
        as_json = await client.post(
            "/v1/auth/token",
            json={"grant_type": "password", "email": email, "password": PASSWORD},
        )
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["access_token"] != body["access_token"]
    # The table holds HMACs, never a token.
    with session_scope(mobile.db) as session:
        rows = list(
            session.exec(select(CustomerToken).where(CustomerToken.account_id == account_id))
        )
    assert sorted(r.kind for r in rows) == ["access", "access", "refresh", "refresh"]
    stored = " ".join(str(value) for r in rows for value in r.model_dump().values())
    for issued in (body, as_json.json()):
        assert issued["access_token"] not in stored and issued["refresh_token"] not in stored
        assert issued["access_token"][4:] not in stored
    secret = mobile.web.web_session_secret
    assert token_hash(secret, "access", body["access_token"]) in {r.token_hash for r in rows}

    me = await get(mobile, "/v1/me", body["access_token"])
    assert me.status_code == 200, me.text
    assert me.json() == {
        "account_id": account_id,
        "email": email,
        "plan": "starter",
        "locale": "de",
        "timezone": "Europe/Berlin",
    }


async def test_an_expired_access_token_is_refused_until_refreshed(mobile: Mobile) -> None:
    _, email = await customer(mobile.api)
    first = await tokens(mobile, email)
    assert (await get(mobile, "/v1/me", first["access_token"])).status_code == 200
    hashed = token_hash(mobile.web.web_session_secret, "access", first["access_token"])
    with session_scope(mobile.db) as session:
        session.exec(  # type: ignore[call-overload]
            update(CustomerToken)
            .where(col(CustomerToken.token_hash) == hashed)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        session.commit()
    expired = await get(mobile, "/v1/me/extra-minutes", first["access_token"])
    assert expired.status_code == 401 and error_of(expired) == "token_expired"
    assert expired.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    renewed = await refresh(mobile, first["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert (await get(mobile, "/v1/me", renewed.json()["access_token"])).status_code == 200
    assert renewed.json()["refresh_token"] != first["refresh_token"]


async def test_refresh_rotates_and_a_reused_refresh_token_ends_the_sign_in(mobile: Mobile) -> None:
    _, email = await customer(mobile.api)
    phone = await tokens(mobile, email)
    tablet = await tokens(mobile, email)  # another device: a sign-in of its own
    second = (await refresh(mobile, phone["refresh_token"])).json()
    assert (await get(mobile, "/v1/me", second["access_token"])).status_code == 200
    # The first access token lives on until it expires: rotation only spends the refresh.
    assert (await get(mobile, "/v1/me", phone["access_token"])).status_code == 200

    # Someone replays the spent refresh token (stolen, or an old copy): refused, and the
    # whole sign-in ends, the legitimate holder's newest tokens included.
    replay = await refresh(mobile, phone["refresh_token"])
    assert replay.status_code == 400 and error_of(replay) == "invalid_grant"
    assert "used before" in replay.json()["detail"]
    for access in (phone["access_token"], second["access_token"]):
        answer = await get(mobile, "/v1/me", access)
        assert answer.status_code == 401 and error_of(answer) == "invalid_token"
    newest = await refresh(mobile, second["refresh_token"])
    assert newest.status_code == 400 and "ended" in newest.json()["detail"]
    # The other device is another sign-in: untouched.
    assert (await get(mobile, "/v1/me", tablet["access_token"])).status_code == 200
    assert (await refresh(mobile, tablet["refresh_token"])).status_code == 200


async def test_two_refreshes_with_one_token_have_one_winner_and_end_the_sign_in(
    mobile: Mobile,
) -> None:
    """Spending is one conditional UPDATE: concurrent refreshes cannot both rotate."""
    _, email = await customer(mobile.api)
    signed_in = await tokens(mobile, email)
    answers = await asyncio.gather(*(refresh(mobile, signed_in["refresh_token"]) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 400, 400, 400]
    winner = next(a for a in answers if a.status_code == 200).json()
    # The losers were reuse: the winner's tokens end with the family.
    assert (await get(mobile, "/v1/me", winner["access_token"])).status_code == 401


async def test_revocation_signs_out_one_device_or_all(mobile: Mobile) -> None:
    _, email = await customer(mobile.api)
    phone, tablet, laptop = [await tokens(mobile, email) for _ in range(3)]
    async with mobile.client() as client:
        # Signing out with the refresh token ends that sign-in's access token too.
        out = await client.post("/v1/auth/revoke", data={"token": phone["refresh_token"]})
        assert out.status_code == 200 and out.json() == {"revoked": 1}
        assert (await get(mobile, "/v1/me", phone["access_token"])).status_code == 401
        assert (await refresh(mobile, phone["refresh_token"])).status_code == 400
        again = await client.post("/v1/auth/revoke", data={"token": phone["refresh_token"]})
        assert again.json() == {"revoked": 0}
        # An unknown token is 200 too (RFC 7009): nothing to tell an attacker.
        unknown = await client.post("/v1/auth/revoke", json={"token": "otr_" + "x" * 43})
        assert unknown.status_code == 200 and unknown.json() == {"revoked": 0}
        assert (await get(mobile, "/v1/me", tablet["access_token"])).status_code == 200
        # All devices, with a live access token (JSON this time).
        everywhere = await client.post(
            "/v1/auth/revoke", json={"token": tablet["access_token"], "all_devices": True}
        )
        assert everywhere.status_code == 200 and everywhere.json() == {"revoked": 2}
    for signed_in in (tablet, laptop):
        assert (await get(mobile, "/v1/me", signed_in["access_token"])).status_code == 401
        assert (await refresh(mobile, signed_in["refresh_token"])).status_code == 400
    assert (await sign_in(mobile, email)).status_code == 200  # signing in again works


async def test_the_admin_ending_sessions_or_a_new_password_ends_the_tokens(
    mobile: Mobile,
) -> None:
    api = mobile.api
    account_id, email = await customer(api)
    first, second = await tokens(mobile, email), await tokens(mobile, email)
    ended = await api.admin.delete(f"/v1/accounts/{account_id}/sessions")
    assert ended.status_code == 200, ended.text
    assert ended.json()["api_sign_ins_ended"] == 2
    for signed_in in (first, second):
        assert (await get(mobile, "/v1/me", signed_in["access_token"])).status_code == 401
        assert (await refresh(mobile, signed_in["refresh_token"])).status_code == 400
    assert (await api.admin.delete(f"/v1/accounts/{account_id}/sessions")).json()[
        "api_sign_ins_ended"
    ] == 0

    third = await tokens(mobile, email)
    new_password = "another long password"
    changed = await api.admin.put(
        f"/v1/accounts/{account_id}/password", json={"password": new_password}
    )
    assert changed.status_code == 204
    assert (await get(mobile, "/v1/me", third["access_token"])).status_code == 401
    assert (await refresh(mobile, third["refresh_token"])).status_code == 400
    assert (await sign_in(mobile, email)).status_code == 400  # the old password
    assert (await sign_in(mobile, email, new_password)).status_code == 200


# --- what the customer sees -------------------------------------------------------------------


async def test_extra_minutes_show_the_live_figures_in_the_customers_unit(mobile: Mobile) -> None:
    api = mobile.api
    account_id, email = await customer(api)
    access = (await tokens(mobile, email))["access_token"]
    off = await get(mobile, "/v1/me/extra-minutes", access)
    assert off.status_code == 200, off.text
    body = off.json()
    assert body["enabled"] is False and body["limit"] is None
    assert body["payment_method"] is None and body["allowed_seconds"] == 0
    assert body["price_per_minute_cents"] == 39 and body["currency"] == "eur"
    assert body["included"] == {
        "minutes": 100,
        "used": {"seconds": 0, "minutes": 0},
        "remaining_seconds": 6000,
    }
    assert body["manage_url"] == f"{PUBLIC_URL}/app/extra-minutes"
    assert body["alert_thresholds"] == [90]
    start = datetime.fromisoformat(body["period"]["start"])
    end = datetime.fromisoformat(body["period"]["end"])
    assert start.utcoffset() is not None and end - start == timedelta(hours=1)

    enabled = await api.enable(account_id, limit_minutes=20)
    assert enabled.status_code == 200, enabled.text
    talked = await api.call(account_id, "call-1", 6000 + 90)  # 100 included min + 90 s
    assert talked == 6090
    live = (await get(mobile, "/v1/me/extra-minutes", access)).json()
    state = await api.state(account_id)
    assert live["enabled"] is True
    assert live["limit"] == {"unit": "minutes", "minutes": 20}
    assert live["allowed_seconds"] == 1200
    assert live["used"] == {"seconds": 90, "minutes": 1}
    assert live["cost_cents"] == state["extra_cost_cents"] == 59  # 90 s × 39 ct / 60, half up
    assert live["included"]["used"] == {"seconds": 6000, "minutes": 100}
    assert live["included"]["remaining_seconds"] == 0
    assert live["accepting_calls"] is True and live["stop_reason"] is None
    assert live["payment_method"] == {
        "type": "card",
        "brand": "visa",
        "bank": None,
        "last4": "4242",
    }
    assert datetime.fromisoformat(live["period"]["start"]) == datetime.fromisoformat(
        state["period_start"]
    )

    euros = await api.admin.put(
        f"/v1/accounts/{account_id}/extra-minutes", json={"enabled": True, "limit_cents": 780}
    )
    assert euros.status_code == 200, euros.text
    live = (await get(mobile, "/v1/me/extra-minutes", access)).json()
    assert live["limit"] == {"unit": "eur", "cents": 780}
    assert live["allowed_seconds"] == 780 * 60 // 39

    stopped = await api.admin.put(
        f"/v1/accounts/{account_id}/extra-minutes", json={"enabled": False}
    )
    assert stopped.status_code == 200
    live = (await get(mobile, "/v1/me/extra-minutes", access)).json()
    assert live["enabled"] is False and live["limit"] is None
    assert live["accepting_calls"] is False
    assert live["stop_reason"] == "included_minutes_exhausted"
    assert live["cost_cents"] == 59  # what was used stays billable


async def test_invoices_newest_first_a_page_at_a_time_and_only_ones_own(mobile: Mobile) -> None:
    account_id, email = await customer(mobile.api)
    other_id, _ = await customer(mobile.api)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    with session_scope(mobile.db) as session:
        for month in range(5):
            start = base + timedelta(days=31 * month)
            session.add(
                Invoice(
                    account_id=account_id,
                    period_start=start,
                    period_end=start + timedelta(days=31),
                    extra_seconds=60 * (month + 1),
                    unit_price_cents=39,
                    amount_cents=39 * (month + 1),
                    status={3: "processing", 4: "open"}.get(month, "paid"),
                    stripe_invoice_id=f"in_{uuid.uuid4().hex[:12]}",
                    hosted_invoice_url=f"https://invoice.stripe.test/{month}",
                    created_at=now,
                    updated_at=now,
                )
            )
        session.add(
            Invoice(
                account_id=other_id,
                period_start=base,
                period_end=base + timedelta(days=31),
                extra_seconds=60,
                unit_price_cents=39,
                amount_cents=39,
                created_at=now,
                updated_at=now,
            )
        )
        session.commit()
    access = (await tokens(mobile, email))["access_token"]
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        path = "/v1/me/invoices?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = await get(mobile, path, access)
        assert page.status_code == 200, page.text
        seen += page.json()["invoices"]
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 5
    starts = [datetime.fromisoformat(i["period"]["start"]) for i in seen]
    assert starts == sorted(starts, reverse=True)
    newest = seen[0]
    assert newest["amount_cents"] == 195 and newest["status"] == "open"
    assert newest["hosted_invoice_url"] == "https://invoice.stripe.test/4"
    berlin = ZoneInfo("Europe/Berlin")
    assert newest["period"]["start"] == (base + timedelta(days=124)).astimezone(berlin).isoformat()
    assert seen[-1]["period"]["start"] == "2026-01-01T01:00:00+01:00"  # the account's zone
    assert {"extra_seconds", "currency", "created_at"} <= newest.keys()
    # A SEPA debit being collected: unpaid, not failed; worded as the web app words it.
    assert [(i["status"], i["status_label"]) for i in seen[:3]] == [
        ("open", "Offen"),
        ("processing", "Lastschrift wird eingezogen"),
        ("paid", "Bezahlt"),
    ]
    assert (await get(mobile, "/v1/me/invoices", access)).json()["next_cursor"] is None


# --- what a customer token cannot do ----------------------------------------------------------


async def test_a_customer_token_reaches_only_its_own_account(mobile: Mobile) -> None:
    api = mobile.api
    own_id, email = await customer(api)
    other_id, other_email = await customer(api)
    access = (await tokens(mobile, email))["access_token"]
    other = (await tokens(mobile, other_email))["access_token"]
    assert (await get(mobile, "/v1/me", other)).json()["account_id"] == other_id
    assert (await get(mobile, "/v1/me", access)).json()["account_id"] == own_id
    for path in (f"/v1/accounts/{own_id}/state", f"/v1/accounts/{other_id}/state"):
        answer = await get(mobile, path, access)
        assert answer.status_code == 403 and error_of(answer) == "forbidden", answer.text
    async with mobile.client(token=access) as client:
        call = await client.post(
            "/v1/calls/authorize", json={"account_id": own_id, "call_id": "c-1"}
        )
        assert call.status_code == 403 and error_of(call) == "forbidden"
    # The admin and telephony tokens are no customer; no token, or a made-up one, is 401.
    async with mobile.client(token=api.settings.admin_token) as client:
        assert (await client.get("/v1/me")).status_code == 403
    async with mobile.client(token=api.settings.telephony_token) as client:
        assert (await client.get("/v1/me/invoices")).status_code == 403
    async with mobile.client() as client:
        missing = await client.get("/v1/me/extra-minutes")
        assert missing.status_code == 401 and error_of(missing) == "unauthorized"
        assert missing.headers["www-authenticate"] == "Bearer"
    for made_up in ("ota_" + "A" * 43, "garbage", "otr_" + "A" * 43):
        answer = await get(mobile, "/v1/me", made_up)
        assert answer.status_code == 401 and error_of(answer) == "invalid_token"
    # A refresh token is not an access token.
    refresh_token = (await tokens(mobile, email))["refresh_token"]
    assert (await get(mobile, "/v1/me", refresh_token)).status_code == 401
    # The admin and telephony tokens keep working as before.
    assert (await api.admin.get(f"/v1/accounts/{own_id}/state")).status_code == 200


def changing_routes(doc: dict[str, Any], account_id: str) -> list[tuple[str, str]]:
    """Every route that changes extra minutes, payment details, the plan or the alerts:
    the /v1/me ones and the admin ones that exist in this build."""
    wanted = ("extra-minutes", "payment-method", "payment-setup", "plan", "alerts")
    found = []
    for path, operations in doc["paths"].items():
        if not path.startswith(("/v1/me/", "/v1/accounts/{account_id}/")):
            continue
        if path.rsplit("/", 1)[-1] not in wanted:
            continue
        for method in operations:
            if method.upper() in ("PUT", "POST", "PATCH", "DELETE"):
                found.append((method.upper(), path.replace("{account_id}", account_id)))
    return found


async def test_every_change_is_refused_as_web_app_only(mobile: Mobile) -> None:
    api = mobile.api
    account_id, email = await customer(api)
    added = await api.add_payment_method(account_id)
    assert added.status_code == 200, added.text
    access = (await tokens(mobile, email))["access_token"]
    doc = (await api.anonymous.get("/openapi.json")).json()
    routes = changing_routes(doc, account_id)
    must = {
        ("PUT", "/v1/me/extra-minutes"),
        ("POST", "/v1/me/extra-minutes"),
        ("PATCH", "/v1/me/extra-minutes"),
        ("DELETE", "/v1/me/extra-minutes"),
        ("PUT", "/v1/me/payment-method"),
        ("POST", "/v1/me/payment-method"),
        ("DELETE", "/v1/me/payment-method"),
        ("POST", "/v1/me/payment-setup"),
        ("PUT", f"/v1/accounts/{account_id}/extra-minutes"),
        ("POST", f"/v1/accounts/{account_id}/payment-setup"),
        ("POST", f"/v1/accounts/{account_id}/payment-method"),
        ("DELETE", f"/v1/accounts/{account_id}/payment-method"),
    }
    assert must <= set(routes)
    bodies: dict[str, Any] = {
        "extra-minutes": {"enabled": True, "limit_cents": 5000},
        "payment-method": {"payment_method_id": "pm_card_mastercard"},
        "plan": {"plan": "business"},
        "alerts": {"thresholds": [50]},
    }
    async with mobile.client(token=access) as client:
        for method, path in routes:
            body = bodies.get(path.rsplit("/", 1)[-1])
            for payload in (body, None):  # a valid body, and none at all: the same answer
                answer = await client.request(method, path, json=payload)
                assert answer.status_code == 403, (method, path, answer.text)
                refused = answer.json()
                assert refused["error"] == "web_app_only", (method, path, refused)
                assert refused["url"].startswith(f"{PUBLIC_URL}/app"), refused
                assert refused["url"] in refused["detail"]
    # Nothing changed: extra minutes still off, the same card, the same plan.
    state = await api.state(account_id)
    assert state["enabled"] is False and state["plan"] == "starter"
    assert state["payment_method_on_file"] is True
    live = (await get(mobile, "/v1/me/extra-minutes", access)).json()
    assert live["payment_method"]["brand"] == "visa"
    # The admin token changes them as before.
    assert (
        await api.admin.put(
            f"/v1/accounts/{account_id}/extra-minutes", json={"enabled": True, "limit_cents": 5000}
        )
    ).status_code == 200


def example_path(path: str, account_id: str) -> str:
    filled = path.replace("{account_id}", account_id)
    while "{" in filled:
        start, end = filled.index("{"), filled.index("}")
        filled = filled[:start] + "x" + filled[end + 1 :]
    return filled


async def test_a_customer_token_gets_no_2xx_outside_its_own_reads(mobile: Mobile) -> None:
    """The sweep: every operation of the OpenAPI document, called with a customer token
    (for the own account and another), answers 2xx only for GET /v1/me* and /v1/auth/*,
    or where no token is needed at all (health, the plan catalog)."""
    api = mobile.api
    own_id, email = await customer(api)
    other_id, _ = await customer(api)
    access = (await tokens(mobile, email))["access_token"]
    doc = (await api.anonymous.get("/openapi.json")).json()
    allowed: list[str] = []
    swept = 0
    async with mobile.client(token=access) as client, mobile.client() as anonymous:
        for path, operations in doc["paths"].items():
            for method in operations:
                if method not in ("get", "put", "post", "patch", "delete"):
                    continue
                if path == "/v1/auth/revoke":
                    continue  # a valid body would sign this very token out; tested above
                for account in (own_id, other_id):
                    url = example_path(path, account)
                    answer = await client.request(method.upper(), url, json={})
                    swept += 1
                    if not 200 <= answer.status_code < 300:
                        continue
                    if path.startswith("/v1/me") and method == "get":
                        allowed.append(path)
                        continue
                    public = await anonymous.request(method.upper(), url, json={})
                    assert 200 <= public.status_code < 300, (method, url, answer.status_code)
    assert swept > 40
    assert {"/v1/me", "/v1/me/extra-minutes", "/v1/me/invoices"} <= set(allowed)


async def test_the_openapi_document_describes_the_customer_api(mobile: Mobile) -> None:
    doc = (await mobile.api.anonymous.get("/openapi.json")).json()
    paths = doc["paths"]
    token = paths["/v1/auth/token"]["post"]
    assert {"application/x-www-form-urlencoded", "application/json"} <= set(
        token["requestBody"]["content"]
    )
    assert {"200", "400", "422", "429"} <= set(token["responses"])
    assert "Retry-After" in token["responses"]["429"]["headers"]
    for path in ("/v1/me", "/v1/me/extra-minutes", "/v1/me/invoices"):
        assert {"200", "401", "403"} <= set(paths[path]["get"]["responses"]), path
    refused = paths["/v1/me/extra-minutes"]["put"]["responses"]["403"]
    assert refused["content"]["application/json"]["schema"]["$ref"].endswith("WebAppOnlyOut")
    limit = doc["components"]["schemas"]["ExtraMinutesMeOut"]["properties"]["limit"]
    assert "discriminator" in str(limit)


# --- throttle and bad input -------------------------------------------------------------------


async def test_failed_sign_ins_are_throttled_per_address_and_per_account(mobile: Mobile) -> None:
    _, email = await customer(mobile.api)
    # Per address: different emails, one address.
    ip = random_ip()
    for n in range(MAX_FAILURES_PER_IP):
        wrong = await sign_in(mobile, f"nobody-{n}-{uuid.uuid4().hex[:6]}@example.com", ip=ip)
        assert wrong.status_code == 400 and error_of(wrong) == "invalid_grant", wrong.text
    blocked = await sign_in(mobile, email, ip=ip)  # even the right password, from there
    assert blocked.status_code == 429, blocked.text
    assert blocked.json()["error"] == "throttled" and blocked.json()["reason"] == "address"
    retry = int(blocked.headers["Retry-After"])
    assert 0 < retry <= mobile.web.web_login_window_seconds
    assert blocked.json()["retry_after"] == retry
    # Per account: failures from many addresses; then even the right password waits
    # (the web app would ask for an emailed code instead), and unknown emails alike.
    for _ in range(MAX_FAILURES):
        assert (await sign_in(mobile, email, "wrong password")).status_code == 400
    held = await sign_in(mobile, email)
    assert held.status_code == 429 and held.json()["reason"] == "account", held.text
    assert 0 < int(held.headers["Retry-After"]) <= mobile.web.web_login_window_seconds
    unknown = f"ghost-{uuid.uuid4().hex[:8]}@example.com"
    for _ in range(MAX_FAILURES):
        assert (await sign_in(mobile, unknown, "whatever")).status_code == 400
    assert (await sign_in(mobile, unknown, "whatever")).json()["reason"] == "account"
    # The admin's own credentials give no customer token (and count as a failure).
    admin = await sign_in(mobile, mobile.web.admin_email, mobile.web.admin_password)
    assert admin.status_code == 400 and error_of(admin) == "invalid_grant"


async def test_bad_input_gets_422_with_a_reason(mobile: Mobile) -> None:
    _, email = await customer(mobile.api)
    access = (await tokens(mobile, email))["access_token"]
    async with mobile.client() as client:

        async def token_with(**kwargs: Any) -> httpx.Response:
            return await client.post("/v1/auth/token", **kwargs)

        form_type = {"content-type": "application/x-www-form-urlencoded"}
        password_grant = {"grant_type": "password", "username": email}
        cases: list[tuple[dict[str, Any], int, str, str]] = [
            ({"data": {"username": email, "password": PASSWORD}}, 422, "", "grant_type"),
            ({"data": password_grant}, 422, "", "password"),
            ({"data": {"grant_type": "refresh_token"}}, 422, "", "refresh_token"),
            ({"data": {**password_grant, "password": "x" * 2000}}, 422, "", "password"),
            ({"json": {**password_grant, "password": 12345678}}, 422, "", "password"),
            ({"json": ["grant_type", "password"]}, 422, "", "object"),
            ({"data": {"grant_type": "client_credentials"}}, 422, "unsupported_grant_type", ""),
            (
                {"content": b"grant_type=password", "headers": {"content-type": "text/plain"}},
                415,
                "unsupported_media_type",
                "form",
            ),
            (
                {"content": b"grant_type=password&grant_type=x", "headers": form_type},
                422,
                "",
                "repeated parameter: grant_type",
            ),
        ]
        for kwargs, status, code, mentioned in cases:
            answer = await token_with(**kwargs)
            assert answer.status_code == status, (kwargs, answer.text)
            assert answer.json()["error"] == (code or "invalid_request"), (kwargs, answer.text)
            assert mentioned in answer.json()["detail"], (kwargs, answer.text)
        missing = await client.post("/v1/auth/revoke", data={})
        assert missing.status_code == 422 and "token" in missing.json()["detail"]
        flag = await client.post("/v1/auth/revoke", data={"token": "x", "all_devices": "maybe"})
        assert flag.status_code == 422 and "all_devices" in flag.json()["detail"]
    for query, code in (
        ("limit=0", "invalid_request"),
        ("limit=101", "invalid_request"),
        ("limit=ten", "invalid_request"),
        ("cursor=not-a-cursor", "invalid_cursor"),
    ):
        answer = await get(mobile, f"/v1/me/invoices?{query}", access)
        assert answer.status_code == 422 and error_of(answer) == code, (query, answer.text)


def test_the_token_table_migration_goes_up_and_down(tmp_path: Path) -> None:
    """0009 adds ``customer_token`` with its indexes and removes it again."""
    engine = engine_for(f"sqlite:///{tmp_path / 'tokens.db'}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0009")
    assert "customer_token" in inspect(engine).get_table_names()
    indexes = {i["name"] for i in inspect(engine).get_indexes("customer_token")}
    assert {
        "ix_customer_token_account_id",
        "ix_customer_token_family_id",
        "ix_customer_token_expires_at",
    } <= indexes
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0008")
    assert "customer_token" not in inspect(engine).get_table_names()
