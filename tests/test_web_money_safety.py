"""Money safety in a real browser: a declined payment is visible and fixable, a change
that stops calls asks first (with and without JavaScript), and an admin action needs a
reason that lands in the audit trail.

German on a 1440 px desktop, English on a 390 px phone; the stack underneath is the real
one of tests/conftest.py (Temporal, worker, fake Stripe, mail catcher).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from overtime.db import session_scope
from overtime.models import Invoice
from tests import test_web
from tests.conftest import Api, eventually
from tests.test_web import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    customer,
    customer_with_a_declined_period,
    shot,
    sign_in,
)

# Debian's chromium, skipped without it, as in tests/test_web.py.
pytestmark = test_web.pytestmark


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=test_web.CHROMIUM, headless=True, args=test_web.CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


async def context(
    browser: Browser, api: Api, viewport: dict[str, int], **options: object
) -> BrowserContext:
    ctx = await browser.new_context(base_url=api.base_url, viewport=viewport, **options)
    ctx.set_default_timeout(15_000)
    ctx.on("console", lambda message: print(f"browser console: {message.text}"))
    return ctx


async def fits_the_screen(page: Page, test_id: str) -> None:
    """The section is within the phone's width (no sideways scrolling to read it)."""
    box = await page.get_by_test_id(test_id).bounding_box()
    width = await page.evaluate("() => document.documentElement.clientWidth")
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (box, width)


# --- a declined payment ----------------------------------------------------------------------


async def test_failed_payment_is_shown_on_every_page_and_fixed_from_the_invoice(
    short_api: Api, browser: Browser
) -> None:
    api = short_api  # periods of a few seconds: the invoice comes quickly
    account_id, email = await customer_with_a_declined_period(api, 90)

    async def dunning_over() -> bool:  # every scheduled retry declined: extra minutes paused
        return (await api.state(account_id))["payment_overdue"]

    await eventually(dunning_over, timeout=30)

    # German, desktop: the banner on every page, the fix on the invoice's row.
    ctx = await context(browser, api, DESKTOP)
    page = await ctx.new_page()
    await sign_in(page, email)
    for path in ("", "/assistant", "/assistant/extra-minutes", "/notices", "/invoices"):
        await page.goto(f"/app/a/{account_id}{path}")
        banner = page.get_by_test_id("payment-banner")
        await expect(banner).to_contain_text("Zahlung fehlgeschlagen")
        # 90 s × 0,39 €/min = 0,59 € net; the banner says what is owed, as the invoice does.
        await expect(banner).to_contain_text(re.compile(r"Die Rechnung über 0,(59|70)\s€"))
        await expect(banner.get_by_test_id("payment-overdue")).to_contain_text(
            "Zusätzliche Minuten sind ausgesetzt"
        )
    row = page.get_by_test_id("invoices").locator("tbody tr").first
    owed = await row.get_by_test_id("invoice-amount").locator("span").first.inner_text()
    await expect(page.get_by_test_id("payment-banner")).to_contain_text(f"über {owed}")
    fix = row.get_by_test_id("invoice-fix")
    await shot(page, "payment-failed")
    await expect(fix).to_contain_text("Die Zahlung ist überfällig")
    await expect(fix.get_by_role("link", name="Rechnung online bezahlen")).to_have_attribute(
        "href", re.compile(r"^http")
    )
    await fix.get_by_role("link", name="Zahlungsmethode ändern").click()
    await expect(page).to_have_url(re.compile(r"/assistant/extra-minutes#payment$"))

    # A working card: the invoice is charged again at once, the banner goes.
    await page.get_by_text("Andere Zahlungsmethode hinterlegen").click()
    await page.get_by_text("Kreditkarte", exact=True).click()
    card = page.locator("#card-element")
    await card.get_by_placeholder("number").fill("4242424242424242")
    await card.get_by_placeholder("exp_month").fill("12")
    await card.get_by_placeholder("exp_year").fill("34")
    await card.get_by_placeholder("cvc").fill("123")
    await page.get_by_role("button", name="Zahlungsdaten speichern", exact=True).click()
    await expect(page.get_by_test_id("flash")).to_have_text("Zahlungsmethode gespeichert.")
    # The settings history names the new payment method (written by the workflow).
    changed = page.get_by_test_id("history").locator(
        "tr", has=page.locator('td[data-kind="payment_method"]')
    )
    await expect(changed.first).to_contain_text("Zahlungsmethode")
    await expect(changed.first).to_contain_text("Visa •••• 4242")

    async def paid() -> bool:
        return not (await api.state(account_id))["payment_overdue"]

    await eventually(paid, timeout=20)
    await page.goto(f"/app/a/{account_id}/invoices")
    await expect(page.get_by_test_id("payment-banner")).to_have_count(0)
    await expect(page.get_by_test_id("invoices").locator("tbody tr").first).to_contain_text(
        "Bezahlt"
    )
    await ctx.close()


async def fill_card(page: Page, number: str) -> None:
    card = page.locator("#card-element")
    await card.get_by_placeholder("number").fill(number)
    await card.get_by_placeholder("exp_month").fill("12")
    await card.get_by_placeholder("exp_year").fill("34")
    await card.get_by_placeholder("cvc").fill("123")


async def test_card_declined_when_saved_says_why_in_german_and_saves_nothing(
    api: Api, browser: Browser
) -> None:
    """Stripe refuses these test cards already when the SetupIntent is confirmed in the
    browser (docs.stripe.com/testing, "Declined payments"): the page says why, in the
    customer's language, and nothing is stored anywhere."""
    account_id, email = await customer(api)
    ctx = await context(browser, api, DESKTOP)
    page = await ctx.new_page()
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
    await page.get_by_text("Kreditkarte", exact=True).click()
    error = page.get_by_test_id("payment-error")
    save = page.get_by_role("button", name="Zahlungsdaten speichern", exact=True)
    nothing_saved = (
        " Es wurde nichts gespeichert. Hinterlege eine andere Karte oder Dein Bankkonto "
        "(SEPA-Lastschrift)."
    )
    for number, reason in [
        ("4000000000009995", "Die Karte ist nicht ausreichend gedeckt."),
        (
            "4000000000000002",
            "Deine Bank hat die Karte abgelehnt. Den Grund erfährst Du bei Deiner Bank.",
        ),
        (
            "4000000000000069",
            "Die Karte ist abgelaufen. Prüfe das Ablaufdatum oder nimm eine andere Karte.",
        ),
    ]:
        await fill_card(page, number)
        await save.click()
        await expect(error).to_have_text(reason + nothing_saved)
    await shot(page, "card-declined")
    await page.reload()
    await expect(page.get_by_test_id("payment-on-file")).to_have_count(0)
    history = page.get_by_test_id("history").locator('td[data-kind="payment_method"]')
    await expect(history).to_have_count(0)
    state = await api.state(account_id)
    assert state["payment_method_on_file"] is False
    # A working card afterwards is saved as always.
    await page.get_by_text("Kreditkarte", exact=True).click()
    await fill_card(page, "4242424242424242")
    await save.click()
    await expect(page.get_by_test_id("flash")).to_have_text("Zahlungsmethode gespeichert.")
    await expect(page.get_by_test_id("payment-on-file")).to_contain_text("Visa •••• 4242")
    await ctx.close()


async def test_direct_debit_being_collected_is_shown_and_not_dunned(
    api: Api, browser: Browser
) -> None:
    """A SEPA debit is processing for days: the invoice says so (German desktop, English
    phone), no failed-payment banner, and the admin console offers no retry (a second
    debit)."""
    now = datetime.now(UTC)
    accounts = {}
    for locale in ("de", "en"):
        account_id, email = await customer(api, locale=locale)
        assert (await api.add_payment_method(account_id, "pm_success_de")).status_code == 200
        with session_scope(api.settings.resolved_database_url()) as session:
            session.add(
                Invoice(
                    account_id=account_id,
                    period_start=now - timedelta(days=31),
                    period_end=now - timedelta(days=1),
                    extra_seconds=600,
                    unit_price_cents=39,
                    amount_cents=390,
                    status="processing",
                    stripe_invoice_id=f"in_processing_{account_id}",
                    hosted_invoice_url="https://invoice.stripe.test/processing",
                    attempts=1,
                    created_at=now,
                    updated_at=now,
                )
            )
            session.commit()
        accounts[locale] = (account_id, email)
    for locale, viewport, label, note in [
        ("de", DESKTOP, "Lastschrift wird eingezogen", "Die Lastschrift ist unterwegs."),
        ("en", PHONE, "Direct debit being collected", "The direct debit is on its way."),
    ]:
        account_id, email = accounts[locale]
        ctx = await context(browser, api, viewport)
        page = await ctx.new_page()
        await sign_in(page, email)
        await page.goto(f"/app/a/{account_id}/invoices")
        row = page.get_by_test_id("invoices").locator("tbody tr").first
        await expect(row.get_by_test_id("invoice-status")).to_have_text(label)
        await expect(row.get_by_test_id("invoice-processing")).to_contain_text(note)
        await expect(row.get_by_test_id("invoice-fix")).to_have_count(0)
        await expect(page.get_by_test_id("payment-banner")).to_have_count(0)
        if locale == "de":
            await shot(page, "invoice-processing")
        await ctx.close()

    admin = await context(browser, api, DESKTOP)
    page = await admin.new_page()
    await sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    await page.goto(f"/admin/accounts/{accounts['de'][0]}")
    invoice = page.get_by_test_id("invoices").locator("tbody tr").first
    await expect(invoice).to_contain_text("processing")
    await expect(invoice).to_contain_text("SEPA debit being collected")
    await expect(invoice.get_by_role("button", name="Retry payment")).to_have_count(0)
    await admin.close()


async def test_failed_payment_banner_in_english_on_a_phone(
    short_api: Api, browser: Browser
) -> None:
    api = short_api
    account_id, email = await customer_with_a_declined_period(api, 60, locale="en")

    async def declined() -> bool:
        invoices = (await api.admin.get(f"/v1/accounts/{account_id}/invoices")).json()
        return any(i["status"] == "payment_failed" for i in invoices)

    await eventually(declined, timeout=30)
    ctx = await context(browser, api, PHONE, is_mobile=True, has_touch=True)
    page = await ctx.new_page()
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}")
    banner = page.get_by_test_id("payment-banner")
    await expect(banner).to_contain_text("Payment failed")
    await expect(banner).to_contain_text(re.compile(r"The invoice of €0\.(39|46)"))
    await expect(banner.get_by_role("link", name="Update payment method")).to_be_visible()
    await expect(banner.get_by_role("link", name="Pay the invoice online")).to_be_visible()
    await fits_the_screen(page, "payment-banner")
    await shot(page, "payment-failed-phone")
    await page.goto(f"/app/a/{account_id}/invoices")
    fix = page.get_by_test_id("invoice-fix")
    await expect(fix.get_by_role("link", name="Update payment method")).to_be_visible()
    # A retry is scheduled (next attempt) or dunning is over (overdue): either is said.
    await expect(fix).to_contain_text(
        re.compile(r"Next automatic attempt|payment is overdue|No further automatic attempt")
    )
    await ctx.close()


# --- changes that stop calls ask first -----------------------------------------------------


async def test_limit_at_or_below_use_and_switching_off_ask_first_without_javascript(
    api: Api, browser: Browser
) -> None:
    account_id, email = await customer(api)
    assert (await api.enable(account_id, limit_minutes=10)).status_code == 200
    assert await api.call(account_id, "included", 6000) == 6000
    assert await api.call(account_id, "extra", 300) == 300  # 5 extra minutes used
    ctx = await context(browser, api, DESKTOP, java_script_enabled=False)
    page = await ctx.new_page()
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
    # The spend beside the limit, in the field's unit (minutes here).
    await expect(page.get_by_test_id("spent-minutes")).to_have_text("5,0 zusätzliche Minuten")
    await expect(page.get_by_test_id("spent-eur")).to_be_hidden()

    await page.get_by_label("Limit in Minuten").fill("5")
    await page.locator("#save").click()
    confirm = page.get_by_test_id("confirm")
    await expect(confirm).to_contain_text(
        "Anrufe werden sofort nicht mehr angenommen, weil Du bereits 5,0 zusätzliche "
        "Minuten genutzt hast"
    )
    assert (await api.state(account_id))["limit_minutes"] == 10, "saved before confirming"
    await shot(page, "confirm-limit")
    await confirm.get_by_role("button", name="Ja, Limit speichern").click()
    await expect(page.get_by_test_id("flash")).to_have_text(
        "Gespeichert. Die Änderung gilt ab sofort."
    )
    assert (await api.state(account_id))["limit_minutes"] == 5

    # Raising the limit stops nothing: saved at once.
    await page.get_by_label("Limit in Minuten").fill("20")
    await page.locator("#save").click()
    await expect(page.get_by_test_id("flash")).to_be_visible()
    assert (await api.state(account_id))["limit_minutes"] == 20

    # Switching off with the included minutes used up: calls stop at once.
    await page.get_by_role("switch", name="Minutenbasierte Zahlung aktivieren").uncheck()
    await page.locator("#save").click()
    await expect(page.get_by_test_id("confirm")).to_contain_text(
        "Anrufe werden sofort nicht mehr angenommen"
    )
    assert (await api.state(account_id))["enabled"] is True
    # The server's rule, whatever the page does: no confirm=1, nothing changes.
    token = await page.locator('input[name="csrf_token"]').first.get_attribute("value")
    answer = await page.request.post(
        f"/app/a/{account_id}/assistant/extra-minutes",
        form={"csrf_token": token or "", "limit_unit": "minutes", "limit_value": "20"},
        max_redirects=0,
    )
    assert answer.status == 200 and 'data-testid="confirm"' in await answer.text()
    assert (await api.state(account_id))["enabled"] is True
    await page.get_by_test_id("confirm-button").click()
    await expect(page.get_by_test_id("flash")).to_be_visible()
    assert (await api.state(account_id))["enabled"] is False
    await ctx.close()


async def test_removing_the_payment_method_asks_first_in_english_on_a_phone(
    api: Api, browser: Browser
) -> None:
    account_id, email = await customer(api, "business", locale="en")
    assert (await api.enable(account_id, limit_cents=2000)).status_code == 200
    ctx = await context(browser, api, PHONE, is_mobile=True, has_touch=True)
    page = await ctx.new_page()
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
    await expect(page.get_by_test_id("spent-eur")).to_have_text("€0.00")
    await page.get_by_role("button", name="Remove payment method").click()
    confirm = page.get_by_test_id("confirm")
    await expect(confirm).to_contain_text("This switches extra minutes off.")
    await expect(confirm).to_contain_text("stops taking calls")
    await fits_the_screen(page, "confirm")
    await confirm.get_by_role("link", name="Cancel").click()
    assert (await api.state(account_id))["payment_method_on_file"] is True
    await page.get_by_role("button", name="Remove payment method").click()
    await page.get_by_role("button", name="Yes, remove").click()
    await expect(page.get_by_test_id("flash")).to_contain_text("Payment method removed")
    state = await api.state(account_id)
    assert (state["payment_method_on_file"], state["enabled"]) == (False, False)
    # The settings history names each kind of change.
    history = page.get_by_test_id("history")
    await expect(history.locator("td[data-kind]").first).to_have_text(
        re.compile("Extra minutes|Payment method")
    )
    await ctx.close()


# --- the admin console: confirm, with a reason ------------------------------------------------


async def test_admin_actions_need_a_reason_that_lands_in_the_audit_trail(
    api: Api, browser: Browser
) -> None:
    account_id, _ = await customer(api)
    assert (await api.enable(account_id, limit_minutes=10)).status_code == 200
    ctx = await context(browser, api, DESKTOP)
    page = await ctx.new_page()
    await sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    await page.goto(f"/admin/accounts/{account_id}")

    # Ending sessions: a confirmation page, a reason required (the server says so too).
    await page.get_by_role("button", name="End all web sessions").click()
    confirm = page.get_by_test_id("confirm")
    await expect(confirm).to_contain_text("signed out of every browser")
    await shot(page, "admin-confirm")
    token = await page.locator('input[name="csrf_token"]').first.get_attribute("value")
    for reason, problem in (("   ", "A reason is required"), ("x" * 501, "at most 500")):
        answer = await page.request.post(
            f"/admin/accounts/{account_id}/sessions/end",
            form={"csrf_token": token or "", "confirm": "1", "reason": reason},
            max_redirects=0,
        )
        assert answer.status == 422 and problem in await answer.text()
    await page.get_by_label("Reason").fill("Customer lost their phone (ticket 4711)")
    await page.get_by_role("button", name="Confirm: end sessions").click()
    await expect(page.get_by_test_id("flash")).to_contain_text("Ended 0 web sessions")
    row = page.get_by_test_id("admin-actions").locator('tr[data-action="end_sessions"]')
    await expect(row).to_contain_text("Customer lost their phone (ticket 4711)")
    await expect(row).to_contain_text(f"admin:{ADMIN_EMAIL}")

    # A limit change: what is used so far, then the reason in the trail.
    await page.get_by_label("Limit", exact=True).fill("15")
    await page.get_by_role("button", name="Apply now").click()
    await expect(page.get_by_test_id("confirm")).to_contain_text("Used this period")
    await page.get_by_label("Reason").fill("Customer asked for a higher limit by phone")
    await page.get_by_role("button", name="Confirm: apply now").click()
    await expect(page.get_by_test_id("flash")).to_be_visible()
    latest = page.get_by_test_id("history").locator("tbody tr").first
    await expect(latest).to_contain_text("On · limit 15 min")
    await expect(latest).to_contain_text("Customer asked for a higher limit by phone")
    await ctx.close()
