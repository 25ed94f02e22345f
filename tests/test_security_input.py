"""Hostile input on every route: 422 ``invalid_request`` in the API's shape, never a 500.

NUL bytes (PostgreSQL refuses them in text, so they used to end in a 500 with a
traceback), invalid UTF-8, duplicate JSON keys (a proxy reading the first value must
never see another value than the one we act on), and plain-text emails that show what
was meant (``Safina & Co``), not HTML entities.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest

from devstack.mail_catcher import MailCatcher
from overtime import mailer
from starter.input_guard import InvalidInput, check_json, check_path, check_query
from tests.conftest import Api


def assert_invalid(response: Any, fragment: str = "") -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == "invalid_request", body
    assert fragment.lower() in body["detail"].lower(), body


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Any:
    """The API runs in this process: an unhandled exception would be logged here."""
    caplog.set_level(logging.ERROR)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def test_nul_in_the_path_and_query(api: Api, no_tracebacks: None) -> None:
    account = await api.create_account()
    for path in (
        "/v1/accounts/%00/state",
        f"/v1/accounts/{account}%00/state",
        "/v1/accounts/a%0Ab/notifications",
        "/v1/accounts/%FF%FE/state",  # not UTF-8
        "/app/a/%00",
        "/admin/accounts/%00",
    ):
        assert_invalid(await api.admin.get(path), "path")
    assert_invalid(await api.admin.get("/admin?q=%00"), "query")
    assert_invalid(await api.admin.get("/login?next=%C3%28"), "utf-8")
    assert_invalid(await api.admin.get("/v1/plans?x=a+%00"), "nul")
    # The ordinary ones still work.
    assert (await api.admin.get(f"/v1/accounts/{account}/state")).status_code == 200
    assert (await api.anonymous.get("/login?next=%2Fapp%2Fa%2Fx")).status_code == 200


async def test_nul_in_the_login_form(api: Api, no_tracebacks: None) -> None:
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as client:
        page = await client.get("/login")
        assert page.status_code == 200
        for form in (
            {"email": "victim\x00@example.com", "password": "x"},
            {"email": "a@example.com", "password": "pass\x00word"},
            {"email": "a@example.com", "password": "x", "next": "/app\x00"},
        ):
            assert_invalid(await client.post("/login", data=form), "nul")
        raw = b"email=%C3%28%40example.com&password=x"
        answer = await client.post(
            "/login",
            content=raw,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert_invalid(answer, "utf-8")
        multipart = await client.post(
            "/login", data={"password": "x"}, files={"email": (None, b"a\x00@example.com")}
        )
        assert_invalid(multipart, "nul")
        # A form the framework cannot parse (no boundary) was a 400 http_error.
        unparsable = await client.post(
            "/login", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"}
        )
        assert_invalid(unparsable, "body cannot be read")
        # An honest wrong password is still the login page's own answer, not a 422.
        wrong = await client.post(
            "/login", data={"email": "nobody@example.com", "password": "wrong", "csrf_token": ""}
        )
        assert wrong.status_code in (200, 400, 401, 403, 429), wrong.text


async def test_json_bodies_with_nul_bad_utf8_duplicates(api: Api, no_tracebacks: None) -> None:
    account = await api.create_account()
    usage = "/v1/calls/usage"
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[bytes, str]] = [
        (b'{"account_id": "a\\u0000", "call_id": "c", "seconds": 1}', "nul"),
        (b'{"account_id": "\xff\xfe", "call_id": "c", "seconds": 1}', "utf-8"),
        (
            b'{"account_id": "' + account.encode() + b'", "call_id": "c", "seconds": 1, '
            b'"seconds": 99999}',
            "'seconds' twice",
        ),
        (b'{"account_id": "x", "call_id": "c", "seconds": NaN}', "nan"),
        (b'{"a\\u0000": 1}', "nul"),
        (b'{"nested": {"k": 1, "k": 2}}', "twice"),
        (b'{"list": ["ok", "bad\\u0000"]}', "list[1]"),
    ]
    for body, fragment in cases:
        assert_invalid(await api.telephony.post(usage, content=body, headers=json_type), fragment)
    # Without a content type FastAPI still reads JSON; so does the guard.
    dup = b'{"enabled": false, "enabled": true, "limit_cents": 1000}'
    assert_invalid(
        await api.admin.put(
            f"/v1/accounts/{account}/extra-minutes",
            content=dup,
            headers={"Content-Type": ""},
        ),
        "twice",
    )
    assert_invalid(
        await api.admin.post(
            "/v1/accounts",
            json={"account_id": "nul-\x00", "email": "a@example.com", "plan": "starter"},
        ),
        "nul",
    )
    # Nothing was recorded, and the account still answers normally.
    state = await api.state(account)
    assert (state["used_seconds"], state["enabled"]) == (0, False)
    # An escaped backslash followed by "u0000" is not a NUL: it passes the guard.
    fine = await api.telephony.post(
        usage,
        content=b'{"account_id": "' + account.encode() + b'", "call_id": "c\\\\u0000", '
        b'"seconds": 1}',
        headers=json_type,
    )
    assert fine.status_code == 422 and "call_id" in fine.json()["detail"]  # the id pattern


async def test_body_parse_errors_are_422_not_400(api: Api, no_tracebacks: None) -> None:
    account = await api.create_account()
    # A UTF-16 body is not UTF-8: the guard answers before FastAPI's 400 could.
    body = '{"account_id": "x", "call_id": "c"}'.encode("utf-16")
    answer = await api.telephony.post(
        "/v1/calls/authorize", content=body, headers={"Content-Type": "application/json"}
    )
    assert_invalid(answer, "utf-8")
    broken = await api.telephony.post(
        "/v1/calls/authorize",
        content=b'{"account_id": "' + account.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert_invalid(broken)


def test_the_guard_checks_directly() -> None:
    with pytest.raises(InvalidInput, match="twice"):
        check_json(b'[{"a": 1}, {"b": 1, "b": 1}]')
    with pytest.raises(InvalidInput, match="Infinity"):
        check_json(b'{"a": -Infinity}')
    check_json(b'{"a": "\\\\u0000", "b": [1, 2, {"c": "\\u00e4"}]}')
    check_json(b"{broken")  # left to the route's own 422
    # A byte-order mark hides nothing: the routes parse past it, so does the guard.
    with pytest.raises(InvalidInput, match="twice"):
        check_json('\ufeff{"call_id": "a", "call_id": "b"}'.encode())
    with pytest.raises(InvalidInput, match="NUL"):
        check_json('\ufeff{"call_id": "a\\u0000"}'.encode())
    # An integer Python will not convert (over 4,300 digits) is a reason, not a 500.
    with pytest.raises(InvalidInput, match="too long"):
        check_json(b'{"seconds": ' + b"9" * 5000 + b"}")
    check_json(b"[" * 64 + b"]" * 64)
    for depth in (65, 5_000, 100_000):  # refused, never a RecursionError (a 500)
        with pytest.raises(InvalidInput, match="nested"):
            check_json(b"[" * depth + b"]" * depth)
    with pytest.raises(InvalidInput):
        check_path({"raw_path": b"/v1/accounts/%00/state", "path": "/v1/accounts/\x00/state"})
    check_path({"raw_path": b"/v1/accounts/J%C3%BCrgen/state", "path": "/v1/accounts/Jürgen"})
    with pytest.raises(InvalidInput):
        check_query(b"q=%00")
    check_query(b"q=caf%C3%A9&next=%2Fapp")


PRODUCT = 'Safina & Co <"Büro">'
LINK = "https://billing.example/invoice?a=1&b=2"


async def test_plain_text_emails_are_not_html_escaped(mail: MailCatcher) -> None:
    to = f"text-{uuid.uuid4().hex[:8]}@example.com"
    for kind, locale in (("invoice", "de"), ("limit_warning", "en"), ("payment_failed", "en")):
        rendered = mailer.render(
            kind,
            locale,
            {
                "product_name": PRODUCT,
                "account_id": "acct-&-<1>",
                "extra_minutes": "1,0",
                "cost": "0,39 €",
                "limit": "10,00 €",
                "price": "0,39 €",
                "period": "01.12.2026 – 31.12.2026",
                "settings_url": "https://app.example/app?x=1&y=2",
                "payment_url": "https://app.example/pay?x=1&y=2",
                "link": LINK,
                "final": False,
                "cause": None,
            },
        )
        mailer.send(
            host="127.0.0.1",
            port=mail.port,
            sender="Overtime <noreply@example.com>",
            to=to,
            email=rendered,
            message_id=f"<{uuid.uuid4().hex}@example.com>",
        )
    caught = mail.to(to)
    assert len(caught) == 3
    for message in caught:
        text, html = message.text(), message.html()
        # The text part as meant: no entities.
        assert PRODUCT in text, text
        assert "&amp;" not in text and "&lt;" not in text and "&#34;" not in text
        assert "?a=1&b=2" in text or "?x=1&y=2" in text
        # The HTML part escaped: no markup from a name, the & in links as &amp;.
        assert PRODUCT not in html
        assert "Safina &amp; Co &lt;&#34;Büro&#34;&gt;" in html
        # The account id is internal: the emails never show it (escaped or not).
        assert "acct-" not in html and "acct-" not in text
        assert "a=1&b=2" not in html and "x=1&y=2" not in html
    invoice = next(m for m in caught if "Rechnung" in m.subject)
    assert LINK in invoice.text()
    assert f'href="{LINK.replace("&", "&amp;")}"' in invoice.html()
