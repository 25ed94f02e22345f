"""Polish people notice, in a real browser (Debian's chromium via Playwright), German and
English, on a 1440 px desktop and a 390 px phone: number input in the page's format,
errors at their field, the usage chart, amounts that never wrap, the phone header, the
language remembered for the account, and ``/docs`` without internet.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, expect

from overtime.db import session_scope
from overtime.models import Account
from starter.web.i18n import parse_euros, parse_minutes
from tests.conftest import Api

# The session's browser fixture is tests/test_web.py's (one chromium for both files); the
# tests' `browser` parameters name it again.
# ruff: noqa: F811
from tests.test_web import NBSP, browser, context, customer, sign_in  # noqa: F401

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


async def sized(browser: Browser, api: Api, viewport: dict[str, int]) -> BrowserContext:
    """tests/test_web.py's context (timeouts, console output) at this size."""
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await page.set_viewport_size(viewport)  # type: ignore[arg-type]
    return ctx


def first_page(ctx: BrowserContext) -> Page:
    return ctx.pages[0]


def stored_locale(api: Api, account_id: str) -> str:
    with session_scope(api.settings.resolved_database_url()) as session:
        account = session.get(Account, account_id)
        assert account is not None
        return account.locale


async def focused_id(page: Page) -> str:
    return await page.evaluate("() => document.activeElement && document.activeElement.id")


# --- numbers as people type them, and errors at their field --------------------------------


@pytest.mark.parametrize(
    ("lang", "text", "cents"),
    [
        ("de", "1.000", 100_000),  # a thousand on a German page, never one euro
        ("de", "1.000,50", 100_050),
        ("de", "1 000", 100_000),
        ("de", "1.000 €", 100_000),
        ("de", "12.50", 1250),  # malformed in German, plain in English
        ("de", "1,000", None),  # three decimals: ambiguous, refused
        ("en", "1,000.50", 100_050),
        ("en", "1,000", 100_000),
        ("en", "1.000", None),
        ("en", "50,5", 5050),
        ("de", "1e3", None),
        ("de", "-5", None),
        ("de", "\u0663", None),  # an Arabic-Indic three is not an amount here
    ],
)
def test_amounts_are_read_in_the_pages_language(lang: str, text: str, cents: int | None) -> None:
    assert parse_euros(text, lang) == cents


def test_minutes_are_whole_so_separators_only_group_thousands() -> None:
    for text in ("1.000", "1,000", "1 000", "1000", "1.000 Min."):
        assert (parse_minutes(text, "de"), parse_minutes(text, "en")) == (1000, 1000), text
    for text in ("1,5", "1.00", "10.0000", "-3", ""):
        assert parse_minutes(text) is None, text


# Records the locale the page gives Stripe(key, options) and stripe.elements(options); the
# Stripe.js in the page (the fake's stand-in) is wrapped, not replaced.
STRIPE_SPY = """
(() => {
  window.__stripeLocales = [];
  let real;
  Object.defineProperty(window, 'Stripe', {
    configurable: true,
    get() {
      if (!real) return undefined;
      return function (key, options) {
        window.__stripeLocales.push(options && options.locale);
        const stripe = real(key, options);
        const elements = stripe.elements.bind(stripe);
        stripe.elements = (opts) => {
          window.__stripeLocales.push(opts && opts.locale);
          return elements(opts);
        };
        return stripe;
      };
    },
    set(value) { real = value; },
  });
})();
"""


async def save_limit(page: Page, unit: str, value: str) -> None:
    await page.locator(f"label[for=unit-{unit}]").click()
    await page.locator("#limit-value").fill(value)
    await page.locator("#save").click()
    await expect(page.get_by_test_id("flash")).to_be_visible()


async def test_german_and_english_numbers_are_read_in_the_pages_language(
    api: Api, browser: Browser
) -> None:
    account_id, email = await customer(api)
    assert (await api.add_payment_method(account_id)).status_code == 200
    ctx = await sized(browser, api, DESKTOP)
    await ctx.add_init_script(STRIPE_SPY)
    page = first_page(ctx)
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
    # Stripe's own texts (Elements, its errors) in the page's language.
    assert await page.evaluate("() => window.__stripeLocales") == ["de", "de"]
    await page.get_by_role("switch", name="Minutenbasierte Zahlung aktivieren").check()

    # German: "1.000,50" is one thousand euros and fifty cents, shown live in minutes too.
    await page.locator("label[for=unit-eur]").click()
    await page.locator("#limit-value").fill("1.000,50")
    await expect(page.get_by_test_id("limit-equals")).to_have_text(
        "entspricht 2.565,3 zusätzlichen Minuten"
    )
    await save_limit(page, "eur", "1.000,50")
    assert (await api.state(account_id))["limit_cents"] == 100_050
    # "1.000 €" (a thousand, with the sign) and "1.000" minutes (a thousand minutes).
    await save_limit(page, "eur", "1.000 €")
    assert (await api.state(account_id))["limit_cents"] == 100_000
    await save_limit(page, "minutes", "1.000")
    state = await api.state(account_id)
    assert (state["limit_minutes"], state["limit_cents"]) == (1000, None)

    # English: "1,000.50".
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes?lang=en")
    assert await page.evaluate("() => window.__stripeLocales") == ["en", "en"]
    await save_limit(page, "eur", "2,000.50")
    assert (await api.state(account_id))["limit_cents"] == 200_050
    await ctx.close()


@pytest.mark.parametrize(
    ("lang", "viewport", "email_error", "password_error"),
    [
        ("de", DESKTOP, "Bitte gib Deine E-Mail-Adresse ein.", "Bitte gib Dein Passwort ein."),
        ("en", PHONE, "Please enter your email address.", "Please enter your password."),
    ],
)
async def test_errors_are_at_their_field_with_focus_there(
    api: Api,
    browser: Browser,
    lang: str,
    viewport: dict[str, int],
    email_error: str,
    password_error: str,
) -> None:
    ctx = await sized(browser, api, viewport)
    page = first_page(ctx)
    await page.goto(f"/login?lang={lang}")
    await page.locator("button[type=submit]").click()  # both fields empty, no JS needed
    await page.wait_for_load_state()
    email, password = page.locator("#email"), page.locator("#password")
    for field, message in ((email, email_error), (password, password_error)):
        await expect(field).to_have_attribute("aria-invalid", "true")
        described = await field.get_attribute("aria-describedby")
        assert described is not None
        await expect(page.locator(f"#{described.split()[0]}")).to_have_text(message)
    assert await focused_id(page) == "email"  # the first invalid field, server-side autofocus

    # Only the password missing: the focus goes there, the email field is not marked.
    await email.fill("someone@example.com")
    await page.locator("button[type=submit]").click()
    await page.wait_for_load_state()
    await expect(password).to_have_attribute("aria-invalid", "true")
    assert await email.get_attribute("aria-invalid") is None
    assert await focused_id(page) == "password"
    await ctx.close()


# --- the usage chart, amounts, the phone header -----------------------------------------


async def chart_texts(page: Page, test_id: str) -> list[str]:
    return [t.strip() for t in await page.get_by_test_id(test_id).all_text_contents()]


async def test_chart_is_localised_has_an_empty_state_and_reads_on_a_phone(
    api: Api, browser: Browser
) -> None:
    account_id, email = await customer(api)
    ctx = await sized(browser, api, DESKTOP)
    page = first_page(ctx)
    await sign_in(page, email)
    await expect(page.get_by_test_id("chart-empty")).to_have_text(
        "Noch keine Anrufe in diesem Zeitraum"
    )
    await expect(page.get_by_test_id("chart-svg")).to_have_count(0)

    assert await api.call(account_id, "polish-chart-1", 90) == 90  # 1,5 minutes today
    await expect(page.get_by_test_id("chart-svg")).to_be_visible()  # the live panel updates
    assert await chart_texts(page, "chart-tick") == ["0,0", "0,5", "1,0", "1,5", "2,0"]
    await expect(page.get_by_test_id("chart-unit")).to_have_text("Min.")
    days = await chart_texts(page, "chart-day")
    assert days and all(re.fullmatch(r"\d\d\.\d\d\.", day) for day in days), days

    await page.goto(f"/app/a/{account_id}?lang=en")
    assert await chart_texts(page, "chart-tick") == ["0.0", "0.5", "1.0", "1.5", "2.0"]
    await expect(page.get_by_test_id("chart-unit")).to_have_text("min")

    # A phone: half as many day labels, each still readable, the email whole in the header.
    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    await page.goto(f"/app/a/{account_id}?lang=de")
    await expect(page.get_by_test_id("chart-svg")).to_be_visible()
    sizes = await page.evaluate(
        """() => [...document.querySelectorAll('[data-testid=chart-tick], [data-testid=chart-day]')]
            .filter((el) => getComputedStyle(el).display !== 'none')
            .map((el) => el.getBoundingClientRect().height)"""
    )
    assert sizes and min(sizes) >= 10, sizes  # px on screen, not SVG units
    visible_days = await page.evaluate(
        """() => [...document.querySelectorAll('[data-testid=chart-day]')]
            .filter((el) => getComputedStyle(el).display !== 'none').length"""
    )
    assert 1 <= visible_days <= 6
    email_span = page.get_by_test_id("signed-in-as").locator(".email")
    await expect(email_span).to_have_text(email)
    lines = await email_span.evaluate("(el) => el.getClientRects().length")
    box = await email_span.bounding_box()
    assert lines == 1 and box is not None and box["x"] + box["width"] <= PHONE["width"]
    overflow = await page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"]
    await ctx.close()


async def test_amounts_never_wrap_on_a_phone(api: Api, browser: Browser) -> None:
    account_id, email = await customer(api)
    assert (await api.enable(account_id, limit_cents=2000)).status_code == 200
    assert await api.call(account_id, "polish-amount-1", 6000 + 60) == 6060
    ctx = await sized(browser, api, PHONE)
    page = first_page(ctx)
    await sign_in(page, email)
    cost = page.get_by_test_id("cost")
    await expect(cost).to_have_text(f"0,39{NBSP}€ von 20,00{NBSP}€")
    await expect(page.get_by_test_id("cost-tax")).to_have_text("zzgl. 19 % MwSt.")
    # Each amount on one line: the cost's text spans at most two rects only where
    # "von" lets it break, never inside "20,00 €".
    amounts = await cost.evaluate(
        """(el) => {
            const range = document.createRange();
            const text = el.firstChild;
            const at = text.textContent.indexOf('20,00');
            range.setStart(text, at);
            range.setEnd(text, at + '20,00\u00a0€'.length);
            return range.getClientRects().length;
        }"""
    )
    assert amounts == 1
    await ctx.close()


# --- the language, remembered for the account -------------------------------------------


async def test_the_chosen_language_is_remembered_for_the_account(
    api: Api, browser: Browser
) -> None:
    account_id, email = await customer(api, locale="de")
    ctx = await sized(browser, api, PHONE)
    page = first_page(ctx)
    await sign_in(page, email)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Übersicht")
    await page.get_by_role("link", name="English").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    assert stored_locale(api, account_id) == "en"  # the next email follows it

    # A new session, nothing chosen on the login page: the account's language, on every
    # page (error pages too).
    await ctx.clear_cookies()
    await sign_in(page, email)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    await page.goto("/app/a/someone-else")
    await expect(page.get_by_test_id("error-page")).to_contain_text("Not found")
    response = await page.goto(f"/app/a/{account_id}/no-such-page")
    assert response is not None and response.status == 404
    await expect(page.get_by_test_id("error-page")).to_contain_text("Not found")

    # Chosen on the login page, then signed in: the customer's choice, stored too.
    await ctx.clear_cookies()
    await page.goto("/login?lang=de")
    await sign_in(page, email)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Übersicht")
    assert stored_locale(api, account_id) == "de"
    await ctx.close()


# --- /docs without internet -----------------------------------------------------------------


async def test_docs_work_offline(api: Api, browser: Browser) -> None:
    html = (await api.anonymous.get("/docs")).text
    assets = re.findall(r"""(?:src|href)=["']?([^"' >]+)""", html)
    assert assets and all(not urlsplit(url).netloc for url in assets), assets
    assert not re.search(r"https?://", html.replace("http://www.w3.org", "")), html
    for url in assets:
        assert (await api.anonymous.get(url)).status_code == 200, url

    ctx = await sized(browser, api, DESKTOP)
    outside: list[str] = []

    async def only_this_server(route: Route) -> None:
        if route.request.url.startswith(api.base_url):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await ctx.route("**/*", only_this_server)
    page = first_page(ctx)
    await page.goto("/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Overtime")
    await expect(page.locator(".opblock").first).to_be_visible()
    assert outside == []
    await ctx.close()


@pytest.mark.parametrize(
    ("lang", "viewport", "unit", "value", "says", "never"),
    [
        ("de", PHONE, "minutes", "1,5", "ganze Minuten", "€"),
        ("en", DESKTOP, "eur", "12.345", "euros", "min"),
    ],
)
async def test_a_wrong_limit_is_reported_at_its_field_in_its_unit(
    api: Api,
    browser: Browser,
    lang: str,
    viewport: dict[str, int],
    unit: str,
    value: str,
    says: str,
    never: str,
) -> None:
    account_id, email = await customer(api, locale=lang)
    assert (await api.add_payment_method(account_id)).status_code == 200
    ctx = await sized(browser, api, viewport)
    page = first_page(ctx)
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
    await page.locator("#enabled").check()
    await page.locator(f"label[for=unit-{unit}]").click()
    await page.locator("#limit-value").fill(value)
    await page.locator("#save").click()
    await page.wait_for_load_state()
    field = page.locator("#limit-value")
    await expect(field).to_have_attribute("aria-invalid", "true")
    described = (await field.get_attribute("aria-describedby") or "").split()
    assert described and described[0] == "limit-value-error", described
    message = await page.locator("#limit-value-error").inner_text()
    assert says in message and never not in message, message  # one unit per message
    assert await focused_id(page) == "limit-value"
    assert (await api.state(account_id))["enabled"] is False  # nothing was changed
    await ctx.close()
