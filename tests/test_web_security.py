"""The web app's sign-in, session, CSRF and throttle over plain HTTP (no browser needed),
and its small pure helpers."""

from __future__ import annotations

import re
from datetime import date

import httpx
import pytest

from devstack.mail_catcher import MailCatcher
from starter.declines import KNOWN_CODES, REASONS, decline_reason
from starter.web.charts import day_chart
from starter.web.customer import decline_texts
from starter.web.data import DayUsage
from starter.web.i18n import MESSAGES, Translator, parse_euros, parse_minutes
from starter.web.login import pending_code_mails
from tests.conftest import Api

PASSWORD = "a long enough password"


async def customer(api: Api) -> tuple[str, str]:
    account_id = await api.create_account("starter")
    answer = await api.admin.put(f"/v1/accounts/{account_id}/password", json={"password": PASSWORD})
    assert answer.status_code == 204, answer.text
    return account_id, f"{account_id}@example.com"


def browser_like(api: Api) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=api.base_url, timeout=30, follow_redirects=False)


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


async def test_password_endpoint_is_admin_only_and_validated(api: Api) -> None:
    account_id = await api.create_account("starter")
    path = f"/v1/accounts/{account_id}/password"
    assert (await api.anonymous.put(path, json={"password": PASSWORD})).status_code == 401
    assert (await api.telephony.put(path, json={"password": PASSWORD})).status_code == 403
    short = await api.admin.put(path, json={"password": "short"})
    assert short.status_code == 422 and short.json()["error"] == "invalid_request"
    unknown = await api.admin.put("/v1/accounts/nobody-here/password", json={"password": PASSWORD})
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_account"
    assert (await api.admin.put(path, json={"password": PASSWORD})).status_code == 204
    # A second account with the same email (any case) cannot even be created, so it
    # cannot take over that login (login_email_taken still guards data from before).
    twin = await api.admin.post(
        "/v1/accounts",
        json={
            "account_id": f"{account_id}-twin",
            "email": f"{account_id.upper()}@example.com",
            "plan": "starter",
        },
    )
    assert twin.status_code == 409 and twin.json()["error"] == "email_taken"
    assert "/v1/accounts/{account_id}/password" in (await api.anonymous.get("/openapi.json")).text


async def test_sign_in_session_cookie_and_sign_out(api: Api) -> None:
    account_id, email = await customer(api)
    async with browser_like(api) as client:
        anonymous = await client.get(f"/app/a/{account_id}")
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == f"/login?next=%2Fapp%2Fa%2F{account_id}"
        before = client.cookies.get("overtime_session")
        await client.get("/login")
        pre_login = client.cookies.get("overtime_session")
        answer = await sign_in(client, email.upper(), PASSWORD)  # emails are case-blind
        assert answer.status_code == 303 and answer.headers["location"] == f"/app/a/{account_id}"
        cookie = answer.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        assert client.cookies.get("overtime_session") not in (before, pre_login)  # no fixation
        page = await client.get(f"/app/a/{account_id}")
        assert page.status_code == 200
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        # Sign out needs the CSRF token too.
        assert (await client.post("/logout")).status_code == 403
        token = await csrf_of(client, f"/app/a/{account_id}")
        out = await client.post("/logout", data={"csrf_token": token})
        assert out.status_code == 303
        assert (await client.get(f"/app/a/{account_id}")).status_code == 303


async def test_every_post_needs_the_csrf_token(api: Api) -> None:
    account_id, email = await customer(api)
    async with browser_like(api) as client:
        # Even the login form: a forged cross-site sign-in is refused.
        forged = await client.post("/login", data={"email": email, "password": PASSWORD})
        assert forged.status_code == 403
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        path = f"/app/a/{account_id}/assistant/extra-minutes"
        for data in ({"enabled": "on", "limit_value": "5"}, {"csrf_token": "forged"}):
            refused = await client.post(path, data=data)
            assert refused.status_code == 403, data
        json_refused = await client.post(
            f"/app/a/{account_id}/payment/method", json={"payment_method_id": "pm_card_visa"}
        )
        assert json_refused.status_code == 403
        assert (await api.state(account_id))["payment_method_on_file"] is False
        token = await csrf_of(client, path)
        accepted = await client.post(
            f"/app/a/{account_id}/payment/method",
            json={"payment_method_id": "pm_card_visa"},
            headers={"X-CSRF-Token": token},
        )
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["last4"] == "4242"
        assert (await api.state(account_id))["payment_method_on_file"] is True


async def test_card_declined_at_the_web_app_is_worded_for_the_customer(api: Api) -> None:
    """A card attached without the browser's SetupIntent (the same route) and declined by
    Stripe: 402 with the reason in the page's language (German here), nothing saved."""
    account_id, email = await customer(api)
    async with browser_like(api) as client:
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        token = await csrf_of(client, f"/app/a/{account_id}/assistant/extra-minutes")
        declined = await client.post(
            f"/app/a/{account_id}/payment/method",
            json={"payment_method_id": "pm_card_visa_chargeDeclinedLostCard"},
            headers={"X-CSRF-Token": token},
        )
    assert declined.status_code == 402, declined.text
    assert declined.json() == {
        "error": "card_declined",
        # A lost card reads as a generic decline (Stripe's guidance).
        "message": "Deine Bank hat die Karte abgelehnt. Den Grund erfährst Du bei Deiner "
        "Bank. Es wurde nichts gespeichert. Hinterlege eine andere Karte oder Dein "
        "Bankkonto (SEPA-Lastschrift).",
    }
    assert (await api.state(account_id))["payment_method_on_file"] is False


async def test_failed_sign_ins_ask_the_owner_for_an_emailed_code(
    api: Api, mail: MailCatcher
) -> None:
    """Failures never lock the owner out: after the limit the right password leads to a
    code sent to the account's email (tests/test_login_throttle.py has the whole attack)."""
    account_id, email = await customer(api)
    async with browser_like(api) as client:
        for _ in range(5):
            wrong = await sign_in(client, email, "not the password")
            assert wrong.status_code == 401
            assert "E-Mail oder Passwort ist falsch." in wrong.text
        assert mail.to(email) == []  # wrong passwords send no mail
        asked = await sign_in(client, email, PASSWORD)
        assert asked.status_code == 200 and 'name="code"' in asked.text
        assert "Code eingeben" in asked.text
        await pending_code_mails()  # the code is mailed after the answer
        assert len(mail.to(email)) == 1
        # The password alone never opened a session.
        assert (await client.get(f"/app/a/{account_id}")).status_code == 303
    # An unknown email fails the same way as a wrong password (no account probing).
    async with browser_like(api) as client:
        unknown = await sign_in(client, "nobody@example.com", PASSWORD)
        assert unknown.status_code == 401 and "E-Mail oder Passwort ist falsch." in unknown.text


async def test_new_password_ends_other_sessions(api: Api) -> None:
    account_id, email = await customer(api)
    async with browser_like(api) as client:
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        assert (await client.get(f"/app/a/{account_id}")).status_code == 200
        changed = await api.admin.put(
            f"/v1/accounts/{account_id}/password", json={"password": "another good password"}
        )
        assert changed.status_code == 204
        assert (await client.get(f"/app/a/{account_id}")).status_code == 303


async def test_links_from_the_emails_lead_to_the_own_account(api: Api) -> None:
    account_id, email = await customer(api)
    async with browser_like(api) as client:
        assert (await client.get("/app/extra-minutes")).headers["location"].startswith("/login")
        assert (await sign_in(client, email, PASSWORD)).status_code == 303
        settings = await client.get("/app/extra-minutes")
        assert settings.headers["location"] == f"/app/a/{account_id}/assistant/extra-minutes"
        payment = await client.get("/app/payment")
        assert payment.headers["location"].endswith("/assistant/extra-minutes#payment")
        # Only local paths are followed after sign-in.
        token = await csrf_of(client, f"/app/a/{account_id}")
        await client.post("/logout", data={"csrf_token": token})
        token = await csrf_of(client)
        answer = await client.post(
            "/login",
            data={
                "csrf_token": token,
                "email": email,
                "password": PASSWORD,
                "next": "https://evil.example/",
            },
        )
        assert answer.headers["location"] == f"/app/a/{account_id}"
        page = await client.get("/login?next=/%5Cevil.example/")  # /\evil.example
        assert page.headers["location"] == f"/app/a/{account_id}"


# --- pure helpers ---------------------------------------------------------------------------


def test_both_languages_have_every_word() -> None:
    assert MESSAGES["de"].keys() == MESSAGES["en"].keys()


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("50", 5000),
        ("50,5", 5050),
        ("50.50", 5050),
        ("1.234,56", 123456),
        ("1,234.56", 123456),
        (" 12 € ", 1200),
        ("0,01", 1),
        ("1,234", None),  # three decimals: not a price
        ("abc", None),
        ("", None),
        ("-5", None),
        ("1e3", None),
    ],
)
def test_parse_euros(text: str, cents: int | None) -> None:
    assert parse_euros(text) == cents


def test_parse_minutes() -> None:
    assert parse_minutes("200") == 200
    assert parse_minutes(" 7 ") == 7
    assert parse_minutes("1.5") is None
    assert parse_minutes("²") is None


def test_formats() -> None:
    de, en = Translator("de"), Translator("en")
    assert de.minutes_floor(1538) == "25,6" and en.minutes_floor(10344) == "172.4"
    assert de.minutes_floor(6_000_000) == "100.000,0"
    assert de.percent(66.67) == "67" and de.percent(5.25) == "5,2" and en.percent(0) == "0"
    assert de.euros_input(2550) == "25,50" and en.euros_input(2550) == "25.50"
    assert de.label("notice.", "limit_warning") == "Limit-Warnung"
    assert de.label("notice.", "something_new") == "something_new"


def test_day_chart_scales_to_the_busiest_day() -> None:
    days = [
        DayUsage(date(2026, 11, 1), 3600, 0),
        DayUsage(date(2026, 11, 2), 6000, 1200),
        DayUsage(date(2026, 11, 3)),
    ]
    chart = day_chart(days)
    assert [t.label for t in chart.ticks] == ["0", "50", "100", "150", "200"]
    busiest = chart.bars[1]
    assert busiest.included_minutes == 100 and busiest.extra_minutes == 20
    assert busiest.extra_y < busiest.included_y
    assert chart.bars[2].included_height == chart.bars[2].extra_height == 0


def test_every_decline_reason_is_worded_in_both_languages() -> None:
    assert decline_reason("card_declined", "insufficient_funds") == "insufficient_funds"
    assert decline_reason("expired_card") == "expired_card"
    assert decline_reason("card_declined", "merchant_blacklist") == "generic_decline"
    assert decline_reason("card_declined", "card_velocity_exceeded") == "insufficient_funds"
    assert decline_reason("setup_intent_authentication_failure") == "authentication_required"
    assert decline_reason(None) == "generic_decline"
    for lang in ("de", "en"):
        t = Translator(lang)
        assert all(t(f"payments.decline.{reason}") for reason in REASONS)
        texts = decline_texts(t)
        assert set(texts) == set(KNOWN_CODES)
        # Stripe: never tell a customer the card was reported lost or stolen.
        assert texts["lost_card"] == texts["stolen_card"] == texts["generic_decline"]
        assert len({texts[reason] for reason in REASONS}) == len(REASONS) - 2
