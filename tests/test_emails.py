"""Every customer email in both languages: the sender's name, the button, the legal
footer, the limit in the customer's unit, and never an internal account id."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from overtime import formatting, mailer, notices
from overtime.settings import Settings

# Templates and SMTP: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

ACCOUNT_ID = "acct-internal-4711"
KINDS = sorted(
    {p.name.split(".")[0] for p in mailer.TEMPLATE_DIR.glob("*.j2") if not p.name.startswith("_")}
)
SETTINGS = Settings(
    product_name="Safina",
    mail_from="Overtime <billing@safina.example>",
    public_url="https://app.safina.example",
    legal_company="Safina Test GmbH",
    legal_address="Teststraße 5, 20095 Hamburg",
    legal_register="Amtsgericht Hamburg, HRB 12345",
    legal_vat_id="DE123456789",
)


def context(locale: str, **overrides: object) -> dict[str, object]:
    """What the notification activity passes, plus an account id a careless template
    could print."""
    url = lambda page: mailer.app_url(SETTINGS, page)  # noqa: E731
    values: dict[str, object] = {
        **mailer.base_context(SETTINGS),
        "account_id": ACCOUNT_ID,
        "extra_minutes": formatting.minutes(1140, locale),
        "cost": formatting.money(741, locale),
        "limit": formatting.limit(780, None, locale),
        "usage": formatting.usage_of_limit(
            extra_seconds=1140,
            extra_cost_cents=741,
            limit_cents=780,
            limit_minutes=None,
            locale=locale,
        ),
        "limit_equivalent": "",
        "percent": 75,
        "thresholds": "50, 75, 90",
        "price": formatting.money(39, locale),
        "fee": formatting.money(2900, locale),
        "included": 100,
        "extra_available": True,
        "plan_name": "Business",
        "old_plan_name": "Starter",
        "method": "Visa •••• 4242",
        "changed_at": "01.12.2026 10:15",
        "period": "01.12.2026 00:00 – 01.01.2027 00:00",
        "settings_url": url("extra-minutes"),
        "payment_url": url("payment"),
        "invoices_url": url("invoices"),
        "plan_url": url("plan"),
        "alerts_url": url("alerts"),
        "link": "https://invoice.stripe.example/i/1",
        "final": False,
        "cause": None,
        # login_code
        "code": "481516",
        "minutes": 10,
        "login_url": "https://app.safina.example/login",
    }
    return values | overrides


@pytest.mark.parametrize("locale", ["de", "en"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_email_has_footer_button_and_no_account_id(kind: str, locale: str) -> None:
    email = mailer.render(kind, locale, context(locale))
    for part in (email.subject, email.text, email.html):
        assert ACCOUNT_ID not in part, (kind, locale)
    # The legal footer, in both parts.
    for part in (email.text, email.html):
        assert "Safina Test GmbH" in part and "Teststraße 5, 20095 Hamburg" in part
        assert "HRB 12345" in part and "DE123456789" in part
    vat = "USt-IdNr." if locale == "de" else "VAT ID"
    assert vat in email.text
    # A call to action: one styled link to a page of the web app (or the invoice).
    buttons = re.findall(r'<a href="([^"]+)" style="display: inline-block;', email.html)
    assert buttons, (kind, locale)
    assert all(b.startswith(("https://app.safina.example/", "https://invoice.")) for b in buttons)
    assert f'lang="{locale}"' in email.html


@pytest.mark.parametrize("locale", ["de", "en"])
def test_buttons_go_to_the_relevant_page(locale: str) -> None:
    pages = {
        "limit_warning": "/app/extra-minutes",
        "limit_reached": "/app/extra-minutes",
        "included_minutes_exhausted": "/app/extra-minutes",
        "extra_minutes_enabled": "/app/extra-minutes",
        "extra_minutes_disabled": "/app/extra-minutes",
        "payment_method_changed": "/app/payment",
        "plan_changed": "/app/plan",
        "login_code": "/login",
    }
    for kind, path in pages.items():
        html = mailer.render(kind, locale, context(locale)).html
        assert f'href="https://app.safina.example{path}"' in html, kind


def test_the_sender_is_the_products_name() -> None:
    assert mailer.sender(SETTINGS) == "Safina <billing@safina.example>"
    named = SETTINGS.model_copy(update={"mail_sender_name": "Safina Abrechnung"})
    assert mailer.sender(named) == "Safina Abrechnung <billing@safina.example>"


@pytest.mark.parametrize(
    ("locale", "minutes", "expected"),
    [
        ("de", None, "7,41 € von 7,80 €"),
        ("en", None, "€7.41 of €7.80"),
        ("de", 20, "19 von 20 Min. (7,41 € von 7,80 €)"),
        ("en", 20, "19 of 20 min (€7.41 of €7.80)"),
    ],
)
def test_the_warning_speaks_the_customers_unit(
    locale: str, minutes: int | None, expected: str
) -> None:
    usage = formatting.usage_of_limit(
        extra_seconds=19 * 60 + 30,
        extra_cost_cents=741,
        limit_cents=780,
        limit_minutes=minutes,
        locale=locale,
    )
    assert usage == expected
    email = mailer.render("limit_warning", locale, context(locale, usage=usage, percent=75))
    assert expected in email.text and "75 %" in email.subject
    assert formatting.limit(780, minutes, locale) in (
        ["7,80 €", "€7.80"] if minutes is None else ["20 Min.", "20 min"]
    )


@pytest.mark.parametrize("locale", ["de", "en"])
def test_old_callers_still_render(locale: str) -> None:
    """The admin console's resend and older tests pass the old context (no percent, no
    usage, no legal): the 90 % wording and the process's footer."""
    old = {
        "product_name": "Safina",
        "account_id": ACCOUNT_ID,
        "extra_minutes": "18,0",
        "cost": "7,02 €",
        "limit": "7,80 €",
        "price": "0,39 €",
        "period": "Dezember",
        "settings_url": "http://127.0.0.1:8000/app/extra-minutes",
        "payment_url": "http://127.0.0.1:8000/app/payment",
        "link": None,
        "final": False,
    }
    for kind in ("limit_warning", "limit_reached", "extra_minutes_disabled"):
        email = mailer.render(kind, locale, old)
        assert ACCOUNT_ID not in email.text + email.html
        assert Settings().legal_company in email.text
    assert "90 %" in mailer.render("limit_warning", locale, old).subject


@pytest.mark.parametrize("locale", ["de", "en"])
def test_the_new_kinds_say_what_happened(locale: str) -> None:
    de = locale == "de"
    enabled = mailer.render(
        "extra_minutes_enabled", locale, context(locale, limit="20 Min." if de else "20 min")
    )
    assert ("20 Min." if de else "20 min") in enabled.subject
    assert "50, 75, 90 %" in enabled.text
    changed = mailer.render("payment_method_changed", locale, context(locale))
    assert "Visa •••• 4242" in changed.text and "01.12.2026 10:15" in changed.text
    assert ("Warst Du das nicht?" if de else "If this wasn't you") in changed.text
    plan = mailer.render("plan_changed", locale, context(locale))
    assert "Starter → Business" in plan.subject
    assert "0,39 €" in plan.text if de else "€0.39" in plan.text
    down = mailer.render(
        "extra_minutes_disabled", locale, context(locale, cause="plan_downgraded", plan_name="Free")
    )
    assert ("neuer Tarif" if de else "new plan") in down.subject and "Free" in down.text


def test_the_templates_never_print_the_account_id() -> None:
    """Belt and braces to the rendering test: no template names the variable at all."""
    for path in Path(mailer.TEMPLATE_DIR).glob("*.j2"):
        assert "account_id" not in path.read_text(), path.name


def test_every_notice_the_admin_may_resend_renders_from_the_period_figures_alone() -> None:
    """A resend has only the stored row and this period's figures (no ``NoticeRecord``):
    every kind the console offers to resend renders from them in both languages; the
    confirmations of one change need what changed, so the console does not offer them."""
    templates = Path(mailer.__file__).parent / "templates" / "email"
    kinds = sorted({p.name.split(".")[0] for p in templates.glob("*.de.j2")} - {"login_code"})
    assert {"limit_warning", "limit_reached", "invoice", "payment_failed"} <= set(kinds)

    def render(kind: str, locale: str) -> mailer.RenderedEmail:
        figures = notices.Figures(
            kind=kind,
            locale=locale,
            timezone="Europe/Berlin",
            period_start=datetime(2026, 11, 1, tzinfo=UTC),
            period_end=datetime(2026, 12, 1, tzinfo=UTC),
            extra_seconds=90,
            extra_cost_cents=59,
            limit_cents=1000,
            limit_minutes=None,
            price_cents=39,
            link=None,
            final=False,
            cause=None,
        )
        return notices.notice_email(Settings(), figures)

    for kind in kinds:
        for locale in ("de", "en"):
            if notices.resendable(kind):
                email = render(kind, locale)
                assert email.subject and email.text, (kind, locale)
            else:
                with pytest.raises(UndefinedError):
                    render(kind, locale)
