"""The web app and the admin console in a real browser (Debian's chromium via Playwright).

Everything underneath is real: the API in-process with its workflows on the Temporal dev
server, localstripe behind devstack/fake_stripe/ (and its stand-in Stripe.js in the
page), SMTP to the mail catcher. Simulated calls go through the telephony API; the pages
must show what the workflows decide. Screenshots of the main pages go to docs/screenshots/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from devstack.mail_catcher import MailCatcher
from tests.conftest import Api, eventually, set_up_in_one_period

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README shows these; the PostgreSQL pass of `make test` writes its own elsewhere.
SCREENSHOTS = Path(
    os.environ.get("OVERTIME_SCREENSHOT_DIR")
    or Path(__file__).resolve().parent.parent / "docs" / "screenshots"
)
PASSWORD = "correct horse battery"
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@overtime.local", "dev-admin-password"
NBSP = "\u00a0"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and shutil.which("chromium") is None,
    reason="browser tests need Debian's chromium: apt-get install chromium (make test does)",
)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


async def context(browser: Browser, api: Api, **options: object) -> BrowserContext:
    ctx = await browser.new_context(
        base_url=api.base_url, viewport={"width": 1280, "height": 860}, **options
    )
    ctx.set_default_timeout(15_000)
    # Shown with a failing test's output.
    ctx.on("console", lambda message: print(f"browser console: {message.text}"))
    ctx.on("weberror", lambda error: print(f"browser error: {error.error}"))
    return ctx


async def customer(api: Api, plan: str = "starter", locale: str = "de") -> tuple[str, str]:
    account_id = await api.create_account(plan, locale=locale)
    response = await api.admin.put(
        f"/v1/accounts/{account_id}/password", json={"password": PASSWORD}
    )
    assert response.status_code == 204, response.text
    return account_id, f"{account_id}@example.com"


async def customer_with_a_declined_period(
    api: Api, extra_seconds: int, locale: str = "de"
) -> tuple[str, str]:
    """A customer with a web login whose short period (``short_api``) used all included
    minutes and ``extra_seconds`` more, on a card that declines every charge: the period's
    invoice will fail to be paid."""

    async def set_up() -> str:
        account_id, _ = await customer(api, locale=locale)
        assert (
            await api.add_payment_method(account_id, "pm_card_chargeCustomerFail")
        ).status_code == 200
        assert (await api.enable(account_id, limit_minutes=30)).status_code == 200
        assert await api.call(account_id, "included", 6000) == 6000
        assert await api.call(account_id, "extra", extra_seconds) == extra_seconds
        return account_id

    account_id = await set_up_in_one_period(api, set_up, extra_seconds=extra_seconds)
    return account_id, f"{account_id}@example.com"


async def sign_in(page: Page, email: str, password: str = PASSWORD) -> None:
    await page.goto("/login")
    await page.locator("#email").fill(email)
    await page.locator("#password").fill(password)
    await page.locator("#password").press("Enter")
    await page.wait_for_load_state()


async def shot(page: Page, name: str, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def text(pattern: str) -> re.Pattern[str]:
    """A pattern where a space also matches the no-break space of formatted numbers."""
    return re.compile(pattern.replace(" ", f"[ {NBSP}]"))


# --- the customer path of the help article, with a card ----------------------------------------


async def test_customer_enables_extra_minutes_and_watches_the_limit(
    api: Api, browser: Browser, mail: MailCatcher
) -> None:
    account_id, email = await customer(api)
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await page.goto("/login")
    await shot(page, "login")
    await sign_in(page, email)
    # Landing: the overview, extra minutes off.
    await expect(page.get_by_role("heading", level=1)).to_have_text("Übersicht")
    await expect(page.get_by_test_id("extra-off")).to_have_text(
        "Die minutenbasierte Zahlung ist aus."
    )

    # Sidebar → "Safina" → "Zusätzliche Minuten" → the switch, as the help page says.
    await (
        page.get_by_role("navigation", name="Hauptmenü")
        .get_by_role("link", name="Safina", exact=True)
        .click()
    )
    await expect(page.get_by_role("heading", level=1)).to_have_text("Safina")
    await page.get_by_test_id("tile-extra-minutes").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Zusätzliche Minuten")
    switch = page.get_by_role("switch", name="Minutenbasierte Zahlung aktivieren")
    await expect(switch).not_to_be_checked()
    await switch.check()

    # Limit in EUR; the minutes it buys are shown as you type (0,39 €/min on Starter).
    await page.get_by_role("radio", name="in Euro").check()
    await page.get_by_label("Limit in Euro").fill("10")
    await expect(page.get_by_test_id("limit-equals")).to_have_text(
        "entspricht 25,6 zusätzlichen Minuten"
    )
    save = page.locator("#save")
    await expect(save).to_have_text("Zahlungsdaten speichern und aktivieren")

    # Payment details last: a card through (the stand-in) Stripe Elements.
    await page.get_by_text("Kreditkarte", exact=True).click()
    card = page.locator("#card-element")
    await card.get_by_placeholder("number").fill("4242424242424242")
    await card.get_by_placeholder("exp_month").fill("12")
    await card.get_by_placeholder("exp_year").fill("34")
    await card.get_by_placeholder("cvc").fill("123")
    await card.get_by_placeholder("postal_code").fill("10115")
    await shot(page, "extra-minutes-card")
    await save.click()
    await expect(page.get_by_test_id("flash")).to_have_text(
        "Gespeichert. Die Änderung gilt ab sofort."
    )
    await expect(page.get_by_test_id("payment-on-file")).to_contain_text("Visa •••• 4242")
    first = page.get_by_test_id("history").locator("tbody tr").first
    await expect(first.locator("td").nth(1)).to_have_text("Du")
    await expect(first.locator("td").nth(2)).to_have_text("Zusätzliche Minuten")
    await expect(first.locator("td").nth(3)).to_have_text("Aus")
    await expect(first.locator("td").nth(4)).to_have_text(text("An · Limit 10,00 €"))
    state = await api.state(account_id)
    assert (state["enabled"], state["limit_cents"], state["payment_method_on_file"]) == (
        True,
        1000,
        True,
    )

    # The same limit in minutes: switching the unit carries the amount over.
    await page.get_by_role("radio", name="in Minuten").check()
    minutes = page.get_by_label("Limit in Minuten")
    await expect(minutes).to_have_value("25")
    await minutes.fill("20")
    await expect(page.get_by_test_id("limit-equals")).to_have_text(
        text("entspricht höchstens 7,80 €")
    )
    await expect(save).to_have_text("Speichern")
    await save.click()
    await expect(page.get_by_test_id("flash")).to_be_visible()
    await expect(first.locator("td").nth(4)).to_have_text("An · Limit 20 Min.")
    state = await api.state(account_id)
    assert (state["limit_minutes"], state["limit_cents"]) == (20, None)

    # The overview follows the workflow live while calls come in.
    await page.get_by_role("link", name="Übersicht").click()
    meter = page.get_by_test_id("extra-meter")
    await expect(meter).to_have_attribute("data-percent", "0.0")
    assert await api.call(account_id, "web-included", 6000) == 6000  # all 100 included minutes
    await expect(page.get_by_test_id("included")).to_have_text("100,0 von 100 Min.")
    assert await api.call(account_id, "web-extra-1", 1080) == 1080  # 18 of 20 extra minutes
    await expect(meter).to_have_attribute("data-state", "warn")
    await expect(page.get_by_test_id("extra-percent")).to_have_text("90 % des Limits genutzt")
    await expect(page.get_by_test_id("warning")).to_have_text(
        "Du hast 90 % Deines Limits erreicht."
    )
    await expect(page.get_by_test_id("cost")).to_have_text(text("7,02 € von 7,80 €"))
    await expect(page.get_by_test_id("call-status")).to_have_attribute("data-accepting", "true")
    await shot(page, "overview-90-percent")

    assert await api.call(account_id, "web-extra-2", 300) == 120  # cut off at the limit
    await expect(meter).to_have_attribute("data-state", "stop")
    await expect(page.get_by_test_id("extra-percent")).to_have_text("100 % des Limits genutzt")
    status = page.get_by_test_id("call-status")
    await expect(status).to_have_attribute("data-accepting", "false")
    await expect(status).to_contain_text("Limit erreicht: Safina nimmt keine Anrufe mehr an.")
    await shot(page, "overview-stopped")
    refused = await api.authorize(account_id, "web-refused")
    assert refused == {"allowed": False, "reason": "limit_reached"}

    # Raise the limit: service resumes at once.
    await page.get_by_role("link", name="Limit ändern").click()
    await page.get_by_label("Limit in Minuten").fill("30")
    await page.locator("#save").click()
    await expect(page.get_by_test_id("call-status")).to_contain_text("Safina nimmt Anrufe an.")
    await page.get_by_role("link", name="Übersicht").click()
    await expect(page.get_by_test_id("call-status")).to_have_attribute("data-accepting", "true")
    await expect(page.get_by_test_id("extra-percent")).to_have_text("67 % des Limits genutzt")
    assert (await api.authorize(account_id, "web-resumed"))["allowed"] is True

    # Both notices reached the customer and are listed.
    await eventually(lambda: len(mail.with_notice(email, "limit_reached")) == 1)
    await page.get_by_role("link", name="Benachrichtigungen").click()
    kinds = page.get_by_test_id("notices").locator("tbody tr td:nth-child(2)")
    await expect(kinds).to_contain_text(["Limit erreicht (100 %)", "Limit-Warnung"])
    await page.get_by_role("link", name="Rechnungen").click()
    await expect(page.get_by_test_id("invoices-empty")).to_be_visible()
    await ctx.close()


# --- SEPA direct debit, in English ---------------------------------------------------------


async def test_sepa_debit_with_mandate_in_english(api: Api, browser: Browser) -> None:
    account_id, email = await customer(api, "business", locale="en")
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Extra minutes")
    await page.get_by_role("switch", name="Enable per-minute billing").check()
    await page.get_by_label("Limit in euros").fill("50.00")
    # 0.29 €/min on Business: 50 € buy 172.4 minutes.
    await expect(page.get_by_test_id("limit-equals")).to_have_text("buys 172.4 extra minutes")
    await expect(page.get_by_label("SEPA Direct Debit")).to_be_checked()
    await page.get_by_label("Account holder's name").fill("Jenny Rosen")
    await expect(page.get_by_label("Email", exact=True)).to_have_value(email)
    await page.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 00")
    await expect(page.get_by_test_id("sepa-mandate")).to_contain_text(
        "you authorise Safina and Stripe, our payment service provider"
    )
    await shot(page, "extra-minutes-sepa")
    # Every field has a label; the switch works from the keyboard and shows its focus.
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select')]
            .filter((el) => el.offsetParent !== null || el.type === 'radio')
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                            && !el.getAttribute('aria-labelledby'))
            .map((el) => el.outerHTML)"""
    )
    assert unlabelled == []
    switch = page.get_by_role("switch", name="Enable per-minute billing")
    await page.get_by_role("link", name="Notifications").focus()
    await page.keyboard.press("Shift+Tab")
    await switch.focus()
    await page.keyboard.press("Space")
    await expect(switch).not_to_be_checked()
    outline = await switch.evaluate("(el) => getComputedStyle(el).outlineStyle")
    assert outline == "solid"
    await page.keyboard.press("Space")
    await expect(switch).to_be_checked()
    await page.get_by_role("button", name="Save payment details and enable").click()
    await expect(page.get_by_test_id("flash")).to_have_text(
        "Saved. The change applies immediately."
    )
    await expect(page.get_by_test_id("payment-on-file")).to_contain_text(
        "SEPA Direct Debit · IBAN •••• 3000"
    )
    state = await api.state(account_id)
    assert (state["enabled"], state["limit_cents"], state["payment_method_on_file"]) == (
        True,
        5000,
        True,
    )
    # A card Stripe declines when it is saved: our words for Stripe's reason; nothing changes.
    await page.get_by_text("Use another payment method").click()
    await page.get_by_text("Card", exact=True).click()
    card = page.locator("#card-element")
    await card.get_by_placeholder("number").fill("4000000000000002")
    await card.get_by_placeholder("exp_month").fill("12")
    await card.get_by_placeholder("exp_year").fill("34")
    await card.get_by_placeholder("cvc").fill("123")
    await page.get_by_role("button", name="Save payment details", exact=True).click()
    await expect(page.get_by_test_id("payment-error")).to_have_text(
        "Your bank declined the card. Your bank can tell you why. Nothing was saved. "
        "Add another card or your bank account (SEPA direct debit)."
    )
    await page.reload()
    await expect(page.get_by_test_id("payment-on-file")).to_contain_text("IBAN •••• 3000")

    # Switching extra minutes off is a save and a confirmation (calls may stop).
    await page.get_by_role("switch", name="Enable per-minute billing").uncheck()
    await page.get_by_role("button", name="Save", exact=True).click()
    await page.get_by_role("button", name="Yes, switch off").click()
    await expect(page.get_by_test_id("history").locator("tbody tr").first).to_contain_text(
        "On · limit €50.00"
    )
    assert (await api.state(account_id))["enabled"] is False
    await ctx.close()


# --- progressive enhancement and the free plan ---------------------------------------------


async def test_settings_form_works_without_javascript(api: Api, browser: Browser) -> None:
    account_id, email = await customer(api)
    ctx = await context(browser, api, java_script_enabled=False)
    page = await ctx.new_page()
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
    # Stripe needs JavaScript: its box stays hidden and a <noscript> says why.
    await expect(page.locator("#stripe-box")).to_be_hidden()
    assert "Zum Hinterlegen der Zahlungsdaten wird JavaScript benötigt" in await page.content()
    switch = page.get_by_role("switch", name="Minutenbasierte Zahlung aktivieren")
    await switch.check()
    await page.get_by_label("Limit in Euro").fill("25,50")
    await page.locator("#save").click()
    # No payment method yet: refused with the reason, the choice kept in the form.
    await expect(page.get_by_test_id("form-error")).to_contain_text(
        "Bitte hinterlege zuerst Deine Zahlungsdaten"
    )
    await expect(page.get_by_label("Limit in Euro")).to_have_value("25,50")
    assert (await api.state(account_id))["enabled"] is False

    assert (await api.add_payment_method(account_id, "pm_card_mastercard")).status_code == 200
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
    await expect(page.get_by_test_id("payment-on-file")).to_contain_text("Mastercard •••• 4444")
    await page.get_by_role("switch", name="Minutenbasierte Zahlung aktivieren").check()
    await page.get_by_label("Limit in Euro").fill("25,50")
    await page.locator("#save").click()
    await expect(page.get_by_test_id("flash")).to_have_text(
        "Gespeichert. Die Änderung gilt ab sofort."
    )
    await expect(page.get_by_test_id("limit-equals")).to_have_text(
        "entspricht 65,3 zusätzlichen Minuten"
    )
    assert (await api.state(account_id))["limit_cents"] == 2550
    await page.get_by_role("radio", name="in Minuten").check()
    await page.get_by_label("Limit in Euro").fill("abc")  # label follows the unit only with JS
    await page.locator("#save").click()
    # Said at the field, in the field's unit (minutes were chosen).
    await expect(page.get_by_test_id("field-error")).to_contain_text("ganze Minuten")
    await expect(page.locator("#limit-value")).to_have_attribute("aria-invalid", "true")
    assert (await api.state(account_id))["limit_cents"] == 2550
    await ctx.close()


async def test_free_plan_sees_why_and_how_to_upgrade(api: Api, browser: Browser) -> None:
    account_id, email = await customer(api, "free")
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
    box = page.get_by_test_id("not-eligible")
    await expect(box).to_contain_text("Dein Tarif Free hat keine monatliche Grundgebühr.")
    await expect(box.locator("tbody tr")).to_have_count(2)  # Starter and Business
    await expect(box).to_contain_text(text("0,39 €"))
    await expect(box.get_by_role("link", name="Tarif wechseln")).to_be_visible()
    await expect(page.get_by_role("switch")).to_have_count(0)
    await shot(page, "free-plan")
    await ctx.close()


# --- isolation between customers, and the admin console -------------------------------------


async def test_customer_cannot_open_another_accounts_pages(api: Api, browser: Browser) -> None:
    mine, my_email = await customer(api)
    theirs, _ = await customer(api)
    ctx = await context(browser, api)
    page = await ctx.new_page()
    # Not signed in: every page sends to the login, and back after it.
    await page.goto(f"/app/a/{mine}/invoices")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.locator("#email").fill(my_email)
    await page.locator("#password").fill(PASSWORD)
    await page.get_by_role("button", name="Anmelden").click()
    await expect(page).to_have_url(re.compile(f"/app/a/{mine}/invoices$"))

    for path in ("", "/assistant/extra-minutes", "/invoices", "/notices", "/usage/live"):
        response = await page.goto(f"/app/a/{theirs}{path}")
        assert response is not None and response.status == 404, path
        await expect(page.get_by_test_id("error-page")).to_contain_text("Nicht gefunden")
        await expect(page.locator("body")).not_to_contain_text(theirs)
    # Changing their settings with my session and my CSRF token: refused, nothing changed.
    await page.goto(f"/app/a/{mine}/assistant/extra-minutes")
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    answer = await page.request.post(
        f"/app/a/{theirs}/assistant/extra-minutes",
        form={"csrf_token": token or "", "enabled": "on", "limit_value": "5"},
        max_redirects=0,
    )
    assert answer.status == 404
    answer = await page.request.post(
        f"/app/a/{theirs}/payment/setup-intent", headers={"X-CSRF-Token": token or ""}
    )
    assert answer.status == 404
    assert (await api.state(theirs))["enabled"] is False
    # The admin console is not for customers.
    response = await page.goto("/admin")
    assert response is not None and response.status == 403
    await expect(page.get_by_role("heading", level=1)).to_have_text("Kein Zugriff")
    await ctx.close()


async def test_admin_sees_every_account_and_acts(
    api: Api, browser: Browser, mail: MailCatcher
) -> None:
    busy, busy_email = await customer(api)
    assert (await api.enable(busy, limit_minutes=10)).status_code == 200
    await api.call(busy, "adm-included", 6000)
    await api.call(busy, "adm-extra", 600)  # the whole limit: stopped
    quiet, _ = await customer(api, "free")
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Accounts")

    # Every account of the database is listed, with live state from its workflow.
    table = page.get_by_test_id("accounts")
    for account_id in (busy, quiet):
        await expect(table.locator(f'tr[data-account="{account_id}"]')).to_have_count(1)
    # The live figures of one account, searched for as an admin would: the whole list
    # answers what its workflows answer within 5 s, and on the PostgreSQL pass it holds every
    # account the suite made so far, more than answer in that time on two cores.
    await page.goto(f"/admin?q={busy}")
    busy_row = table.locator(f'tr[data-account="{busy}"]')
    await expect(busy_row).to_have_attribute("data-status", "limit_reached")
    await expect(busy_row.get_by_test_id("used")).to_contain_text("100 %")
    await expect(busy_row.get_by_role("link", name=re.compile("Temporal UI"))).to_have_attribute(
        "href", re.compile(f"/namespaces/default/workflows/account-{busy}$")
    )

    # Filter and sort.
    await page.get_by_label("Status").select_option("stopped")
    await page.get_by_label("Search (id or email)").fill(busy)
    await page.get_by_role("button", name="Apply").click()
    await expect(table.locator("tbody tr")).to_have_count(1)
    await expect(table.locator("tbody tr")).to_have_attribute("data-account", busy)
    await page.goto("/admin?status=all&sort=used&dir=desc")
    assert await table.locator("tbody tr").count() >= 2
    # The busiest accounts first, and the window only: the list holds every account the
    # session's other tests created.
    await shot(page, "admin-accounts", full_page=False)

    # One account: history, ledger, notices, invoices and the actions.
    await page.goto(f"/admin/accounts/{busy}")
    await expect(page.get_by_test_id("ledger").locator("tbody tr")).to_have_count(2)
    # The card (named as Stripe shows it), then the limit.
    history = page.get_by_test_id("history")
    await expect(history.locator('tbody tr[data-kind="extra_minutes"]')).to_have_count(1)
    await expect(history.locator('tbody tr[data-kind="payment_method"]')).to_contain_text(
        "Visa •••• 4242"
    )
    await expect(page.get_by_test_id("call-status")).to_have_attribute("data-accepting", "false")
    await page.get_by_label("Unit").select_option("minutes")
    await page.get_by_label("Limit", exact=True).fill("15")
    await page.get_by_role("button", name="Apply now").click()
    await page.get_by_label("Reason").fill("Customer asked for more minutes")
    await page.get_by_role("button", name="Confirm: apply now").click()
    await expect(page.get_by_test_id("flash")).to_contain_text("Settings changed")
    await expect(page.get_by_test_id("call-status")).to_have_attribute("data-accepting", "true")
    latest = page.get_by_test_id("history").locator("tbody tr").first
    await expect(latest).to_contain_text(f"admin:{ADMIN_EMAIL}")
    await expect(latest).to_contain_text("On · limit 15 min")
    assert (await api.state(busy))["limit_minutes"] == 15

    await eventually(lambda: len(mail.with_notice(busy_email, "limit_reached")) == 1)
    await page.reload()
    notices = page.get_by_test_id("notices")
    await (
        notices.locator("tr", has_text="limit_reached")
        .get_by_role("button", name=re.compile("Resend"))
        .click()
    )
    await page.get_by_label("Reason").fill("Customer did not get the email")
    await page.get_by_role("button", name="Confirm: resend").click()
    await expect(page.get_by_test_id("flash")).to_contain_text("again.")
    await eventually(lambda: len(mail.with_notice(busy_email, "limit_reached")) == 2)
    resent = mail.with_notice(busy_email, "limit_reached")[-1]
    assert resent.header("X-Overtime-Resent") == "true"
    await expect(notices.locator("tr", has_text="(resent)")).to_have_count(1)
    await shot(page, "admin-account")
    await ctx.close()


# --- invoices, and an operator retrying a failed payment ----------------------------------


async def test_invoice_pages_and_retrying_a_failed_payment(
    short_api: Api, browser: Browser, mail: MailCatcher
) -> None:
    api = short_api  # billing periods of a few seconds: invoices come quickly
    account_id, email = await customer_with_a_declined_period(api, 90)

    async def dunning_over() -> bool:  # every scheduled retry declined: extra minutes paused
        return (await api.state(account_id))["payment_overdue"]

    await eventually(dunning_over, timeout=30)
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/invoices")
    row = page.get_by_test_id("invoices").locator("tbody tr").first
    await expect(row).to_contain_text("Zahlung fehlgeschlagen")
    await expect(row.locator("td").nth(1)).to_have_text("1,5")
    # 90 s × 0,39 €/min = 0,59 € net; the customer owes it with 19 % VAT (H3's tax).
    await expect(row.locator("td").nth(2)).to_contain_text(text("0,70 € inkl. 19 % MwSt."))
    await expect(row.get_by_role("link", name="Bei Stripe ansehen")).to_have_attribute(
        "href", re.compile(r"^http")
    )
    await page.get_by_role("link", name="Übersicht").click()
    # A new period: included minutes answer calls, extra minutes wait for the payment.
    await expect(page.get_by_test_id("overdue")).to_contain_text(
        "Zahlung überfällig: Zusätzliche Minuten sind ausgesetzt"
    )
    await ctx.close()

    failures = len(mail.with_notice(email, "payment_failed"))
    admin = await context(browser, api)
    page = await admin.new_page()
    await sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    await page.goto(f"/admin/accounts/{account_id}")
    invoice = page.get_by_test_id("invoices").locator("tbody tr").first
    await expect(invoice).to_contain_text("payment failed")
    await invoice.get_by_role("button", name="Retry payment").click()
    await page.get_by_label("Reason").fill("Customer topped up the card")
    await page.get_by_role("button", name="Confirm: retry payment").click()
    await expect(page.get_by_test_id("flash")).to_contain_text("Payment retry requested")
    # The invoice workflow charged again at once (declined again: one more notice).
    await eventually(lambda: len(mail.with_notice(email, "payment_failed")) == failures + 1)
    await admin.close()
