"""Server-side web sessions against the running API: the cookie is an opaque id, logout
and the admin end sessions at once (a copied cookie stops working), sign-in rotates the
id, and anonymous sessions cannot grow the table without bound."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from itsdangerous import TimestampSigner
from sqlalchemy import event, func
from sqlmodel import select

from overtime.db import engine_for, init_db, session_scope
from overtime.models import WebSession
from starter.web.config import WebSettings
from starter.web.pages import HTMX
from starter.web.sessions import SESSION_COOKIE, SessionStore, id_hash, is_web_path
from tests.conftest import Api

PASSWORD = "a long enough password"
WEB = WebSettings()  # what the test API runs with (no OVERTIME_ variables in tests)


async def customer(api: Api) -> tuple[str, str]:
    account_id = await api.create_account("starter")
    answer = await api.admin.put(f"/v1/accounts/{account_id}/password", json={"password": PASSWORD})
    assert answer.status_code == 204, answer.text
    return account_id, f"{account_id}@example.com"


def browser_like(api: Api, cookie: str | None = None) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=api.base_url, timeout=30, follow_redirects=False)
    if cookie is not None:
        client.cookies.set(SESSION_COOKIE, cookie)
    return client


async def csrf_of(client: httpx.AsyncClient, path: str = "/login") -> str:
    page = await client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    token = await csrf_of(client)
    return await client.post(
        "/login", data={"csrf_token": token, "email": email, "password": password}
    )


def rows(api: Api, **where: str) -> list[WebSession]:
    with session_scope(api.settings.resolved_database_url()) as session:
        query = select(WebSession)
        for column, value in where.items():
            query = query.where(getattr(WebSession, column) == value)
        return list(session.exec(query))


def row_of(api: Api, token: str) -> WebSession | None:
    with session_scope(api.settings.resolved_database_url()) as session:
        return session.get(WebSession, id_hash(WEB.web_session_secret, token))


async def test_the_cookie_is_an_opaque_random_id(api: Api) -> None:
    account_id, email = await customer(api)
    async with browser_like(api) as client:
        answer = await sign_in(client, email, PASSWORD)
        assert answer.status_code == 303
        header = answer.headers["set-cookie"]
        attributes = {part.strip().split("=")[0].lower() for part in header.split(";")}
        assert {"httponly", "path", "max-age"} <= attributes
        assert "samesite=lax" in header.lower() and "path=/" in header.lower()
        assert "secure" not in attributes  # OVERTIME_WEB_HTTPS_ONLY is off in tests
        value = client.cookies[SESSION_COOKIE]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)  # token_urlsafe(32), nothing else
        for text in (value, value.split(".")[0]):
            try:
                decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                continue
            assert email.encode() not in decoded.lower() and b"{" not in decoded[:2]
            assert account_id.encode() not in decoded
        assert email not in value and account_id not in value
        # The database keeps only the HMAC of the id, with who signed in.
        assert rows(api, id_hash=value) == []
        stored = row_of(api, value)
        assert stored is not None and stored.kind == "customer"
        assert stored.account_id == account_id and stored.email == email
        assert stored.csrf and stored.csrf not in header
        age = (stored.expires_at - stored.created_at).total_seconds()
        assert age == WEB.web_session_max_age_seconds  # absolute, from sign-in
        # A page that changes nothing in the session writes nothing (and sets no cookie).
        page = await client.get(f"/app/a/{account_id}")
        assert page.status_code == 200 and "set-cookie" not in page.headers
    # A cookie that is not ours is no session and no error.
    async with browser_like(api, "garbage" * 20) as stranger:
        assert (await stranger.get(f"/app/a/{account_id}")).status_code == 303
        assert (await stranger.get("/login")).status_code == 200


async def test_a_cookie_signed_with_the_session_secret_is_no_session(api: Api) -> None:
    """The old attack: a Starlette-style cookie signed with the (here: public dev) secret.
    Sessions are rows now, so knowing the secret forges nothing."""
    account_id, _ = await customer(api)
    payload = {"kind": "customer", "email": f"{account_id}@example.com", "csrf": "x"}
    payload |= {"account_id": account_id, "epoch": 0}
    forged = TimestampSigner(WEB.web_session_secret).sign(
        base64.b64encode(json.dumps(payload).encode())
    )
    async with browser_like(api, forged.decode()) as attacker:
        assert (await attacker.get(f"/app/a/{account_id}")).status_code == 303
        changed = await attacker.post(
            f"/app/a/{account_id}/assistant/extra-minutes",
            data={"csrf_token": "x", "enabled": "on", "limit_value": "9999"},
        )
        assert changed.status_code in (303, 403)
    assert (await api.state(account_id))["enabled"] is False


async def test_sign_in_replaces_the_session_id(api: Api) -> None:
    account_id, email = await customer(api)
    async with browser_like(api) as client:
        await client.get("/login")
        anonymous = client.cookies[SESSION_COOKIE]
        stored = row_of(api, anonymous)
        assert stored is not None and stored.kind == "anonymous"
        assert (
            stored.expires_at - stored.created_at
        ).total_seconds() == WEB.web_session_anonymous_max_age_seconds
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        signed_in = client.cookies[SESSION_COOKIE]
        assert signed_in != anonymous
        assert row_of(api, anonymous) is None  # the pre-login id is gone: no fixation
    # The id planted before sign-in does not become the signed-in session.
    async with browser_like(api, anonymous) as attacker:
        assert (await attacker.get(f"/app/a/{account_id}")).status_code == 303


async def test_a_cookie_copied_before_logout_stops_working(api: Api) -> None:
    account_id, email = await customer(api)
    async with browser_like(api) as client:
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        copied = client.cookies[SESSION_COOKIE]
        async with browser_like(api, copied) as thief:
            assert (await thief.get(f"/app/a/{account_id}")).status_code == 200
            token = await csrf_of(client, f"/app/a/{account_id}")
            assert (await client.post("/logout", data={"csrf_token": token})).status_code == 303
            assert row_of(api, copied) is None
            after = await thief.get(f"/app/a/{account_id}")
            assert after.status_code == 303 and after.headers["location"].startswith("/login")
        # The browser that signed out holds no session any more (its cookie was deleted).
        assert client.cookies.get(SESSION_COOKIE) in (None, "")
        assert (await client.get(f"/app/a/{account_id}")).status_code == 303


async def test_admin_logout_ends_the_admin_session(api: Api) -> None:
    async with browser_like(api) as admin:
        assert (await sign_in(admin, WEB.admin_email, WEB.admin_password)).status_code == 303
        copied = admin.cookies[SESSION_COOKIE]
        assert (await admin.get("/admin")).status_code == 200
        token = await csrf_of(admin, "/admin")
        assert (await admin.post("/logout", data={"csrf_token": token})).status_code == 303
    async with browser_like(api, copied) as thief:
        assert (await thief.get("/admin")).status_code == 303


async def test_the_admin_api_ends_a_customers_sessions(api: Api) -> None:
    account_id, email = await customer(api)
    other_id, other_email = await customer(api)
    path = f"/v1/accounts/{account_id}/sessions"
    async with browser_like(api) as first, browser_like(api) as second, browser_like(api) as other:
        for client in (first, second):
            assert (await sign_in(client, email, PASSWORD)).status_code == 303
        assert (await sign_in(other, other_email, PASSWORD)).status_code == 303
        assert (await api.anonymous.delete(path)).status_code == 401
        assert (await api.telephony.delete(path)).status_code == 403
        unknown = await api.admin.delete("/v1/accounts/nobody-here/sessions")
        assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_account"
        ended = await api.admin.delete(path)
        assert ended.status_code == 200 and ended.json() == {"ended": 2, "api_sign_ins_ended": 0}
        for client in (first, second):
            assert (await client.get(f"/app/a/{account_id}")).status_code == 303
        # Another customer is untouched, and the password still works.
        assert (await other.get(f"/app/a/{other_id}")).status_code == 200
        assert (await api.admin.delete(path)).json() == {"ended": 0, "api_sign_ins_ended": 0}
        assert (await sign_in(first, email, PASSWORD)).status_code == 303
    assert "/v1/accounts/{account_id}/sessions" in (await api.anonymous.get("/openapi.json")).text


async def test_the_console_button_ends_a_customers_sessions(api: Api) -> None:
    account_id, email = await customer(api)
    async with browser_like(api) as shopper, browser_like(api) as admin:
        assert (await sign_in(shopper, email, PASSWORD)).status_code == 303
        assert (await sign_in(admin, WEB.admin_email, WEB.admin_password)).status_code == 303
        page = await admin.get(f"/admin/accounts/{account_id}")
        assert page.status_code == 200
        assert "End all web sessions" in page.text and "1 signed-in session now" in page.text
        action = f"/admin/accounts/{account_id}/sessions/end"
        assert (await admin.post(action)).status_code == 403  # CSRF, as every form
        assert (await shopper.get(f"/app/a/{account_id}")).status_code == 200
        token = await csrf_of(admin, f"/admin/accounts/{account_id}")
        # The console asks first, for a reason for the audit trail (tests/test_web_money_safety.py).
        asked = await admin.post(action, data={"csrf_token": token})
        assert asked.status_code == 200 and "Confirm: end sessions" in asked.text
        assert (await shopper.get(f"/app/a/{account_id}")).status_code == 200
        done = await admin.post(
            action, data={"csrf_token": token, "confirm": "1", "reason": "lost phone"}
        )
        assert (
            done.status_code == 303 and done.headers["location"] == f"/admin/accounts/{account_id}"
        )
        assert (await shopper.get(f"/app/a/{account_id}")).status_code == 303
        after = await admin.get(f"/admin/accounts/{account_id}")
        assert "Ended 1 web session and 0 mobile sign-ins of the customer." in after.text
        assert "0 signed-in sessions now" in after.text
        # A customer cannot press it.
        assert (await sign_in(shopper, email, PASSWORD)).status_code == 303
        token = await csrf_of(shopper, f"/app/a/{account_id}")
        refused = await shopper.post(action, data={"csrf_token": token})
        assert refused.status_code == 403


async def test_a_new_password_deletes_the_sessions(api: Api) -> None:
    account_id, email = await customer(api)
    async with browser_like(api) as client:
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        assert len(rows(api, account_id=account_id)) == 1
        changed = await api.admin.put(
            f"/v1/accounts/{account_id}/password", json={"password": "another good password"}
        )
        assert changed.status_code == 204
        assert rows(api, account_id=account_id) == []
        assert (await client.get(f"/app/a/{account_id}")).status_code == 303


def test_anonymous_sessions_expire_and_are_capped(tmp_path: Path) -> None:
    """The store on its own database: expired rows and anonymous rows beyond the cap are
    pruned (oldest first); signed-in sessions are never evicted for anonymous ones."""
    db = f"sqlite:///{tmp_path / 'sessions.db'}"
    init_db(db)
    store = SessionStore(
        db, "secret", max_age_seconds=60, anonymous_max_age_seconds=1, max_anonymous=10
    )
    signed_in = store.save(None, {"kind": "customer", "email": "a@example.com", "csrf": "x"})
    assert signed_in is not None
    short_lived = store.save(None, {"csrf": "first"})
    assert short_lived is not None and short_lived[1] == 1
    time.sleep(1.1)
    assert store.load(short_lived[0]) is None  # expired: gone, also from the table
    tokens = [store.save(None, {"csrf": f"t{i}"}) for i in range(30)]
    store.prune()

    def count(kind: str) -> int:
        with session_scope(db) as session:
            return session.exec(
                select(func.count()).select_from(WebSession).where(WebSession.kind == kind)
            ).one()

    assert count("anonymous") <= 10
    assert count("customer") == 1
    newest = tokens[-1]
    assert newest is not None and store.load(newest[0]) is not None  # the oldest went first
    loaded = store.load(signed_in[0])
    assert loaded is not None and loaded.values["email"] == "a@example.com"


@contextmanager
def session_queries(api: Api) -> Iterator[list[str]]:
    """Every SQL statement on ``web_session`` the (in-process) API runs meanwhile, seen
    by a listener on its real engine (other tables: the worker's, /healthz's, ignored)."""
    engine = engine_for(api.settings.resolved_database_url())
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "web_session" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


async def test_only_web_pages_look_sessions_up(api: Api) -> None:
    """A browser sends its cookie everywhere on the host, but only the web app's pages
    have sessions: the telephony hot path, static files, health, metrics, the codec and
    the API docs cost no session query, with a real session cookie or a random one."""
    account_id, email = await customer(api)
    async with browser_like(api) as client:
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        real = client.cookies[SESSION_COOKIE]
    elsewhere = [
        "/v1/plans",
        f"/v1/accounts/{account_id}/state",
        f"/static/{HTMX}",
        "/healthz",
        "/livez",
        "/metrics",
        "/codec/decode",
        "/openapi.json",
        "/docs",
        "/nowhere",
    ]
    for cookie in (real, secrets.token_urlsafe(32)):
        async with browser_like(api, cookie) as browser:
            with session_queries(api) as seen:
                for path in elsewhere:
                    answer = await browser.get(path)
                    assert answer.status_code < 500, (path, answer.text[:200])
                    assert "set-cookie" not in answer.headers, path
                posted = await browser.post("/v1/calls/authorize", json={})
                assert posted.status_code in (401, 403, 422)
            assert seen == [], seen
    # The same cookie on a page is looked up (the listener does see the queries)...
    async with browser_like(api, real) as browser:
        with session_queries(api) as seen:
            assert (await browser.get(f"/app/a/{account_id}")).status_code == 200
        assert seen
    # ...but a cookie that cannot be one of ours (not the shape of token_urlsafe(32)) is
    # no session without asking the database, on a page too.
    for malformed in ("garbage", real[:-1], real + "A", real[:-1] + "=", real[:-1] + "."):
        async with browser_like(api, malformed) as browser:
            with session_queries(api) as seen:
                answer = await browser.get(f"/app/a/{account_id}")
                assert answer.status_code == 303
            assert seen == [], malformed


def test_web_paths() -> None:
    for path in ("/", "/login", "/logout", "/app", "/app/a/x", "/admin", "/admin/rows"):
        assert is_web_path(path), path
    for path in ("/v1/plans", "/static/web.css", "/healthz", "/livez", "/metrics", "/codec/decode"):
        assert not is_web_path(path), path
    for path in ("/openapi.json", "/docs", "/application", "/administrator", "/v1/app"):
        assert not is_web_path(path), path
