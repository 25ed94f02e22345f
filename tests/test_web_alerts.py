"""The alerts page in a real browser: thresholds and extra recipients in both languages,
bad input answered at its field, the notices' content and the overview's forecast."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from devstack.mail_catcher import MailCatcher
from tests.conftest import Api, eventually
from tests.test_web import CHROMIUM, browser, context, customer, shot, sign_in  # noqa: F401

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and shutil.which("chromium") is None,
    reason="browser tests need Debian's chromium: apt-get install chromium (make test does)",
)


async def test_thresholds_and_a_recipient_in_german(
    api: Api,
    browser: Browser,  # noqa: F811
    mail: MailCatcher,
) -> None:
    account_id, email = await customer(api, locale="de")
    billing = f"buchhaltung-{uuid.uuid4().hex[:6]}@example.com"
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await sign_in(page, email)
    # From the extra-minutes page, as the customer finds it.
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
    await page.get_by_test_id("alerts-link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Benachrichtigungen einstellen")
    thresholds = page.get_by_label("Warnen bei (Prozent des Limits)")
    await expect(thresholds).to_have_value("90")  # the default
    await expect(page.get_by_test_id("alerts-own")).to_contain_text(email)

    # Bad input: the reason at the field, nothing saved, what was typed kept.
    await thresholds.fill("50, 101")
    recipients = page.get_by_label("Außerdem an (E-Mail-Adressen)")
    await recipients.fill("keine-adresse")
    await page.get_by_test_id("alerts-save").click()
    await expect(page.get_by_test_id("form-error")).to_be_visible()
    error = page.locator("#alerts-thresholds-error")
    await expect(error).to_have_text("101 % geht nicht: Jeder Wert muss zwischen 1 und 99 liegen.")
    await expect(thresholds).to_have_attribute("aria-invalid", "true")
    await expect(thresholds).to_be_focused()
    await expect(page.locator("#alerts-recipients-error")).to_have_text(
        "„keine-adresse“ ist keine gültige E-Mail-Adresse."
    )
    await expect(thresholds).to_have_value("50, 101")
    assert (await api.state(account_id))["alert_thresholds"] == [90]

    await thresholds.fill("90, 50 75")
    await recipients.fill(billing)
    await page.get_by_test_id("alerts-save").click()
    await expect(page.get_by_test_id("flash")).to_have_text(
        "Deine Benachrichtigungen sind gespeichert."
    )
    await expect(thresholds).to_have_value("50, 75, 90")
    await expect(recipients).to_have_value(billing)
    await expect(page.get_by_test_id("alerts-current")).to_have_text(
        "Aktuell: 50 %, 75 %, 90 % und 100 %"
    )
    await shot(page, "alerts")
    assert (await api.state(account_id))["alert_thresholds"] == [50, 75, 90]

    # The next notice goes to the billing address too; the notices page shows its text.
    assert (await api.enable(account_id, limit_cents=780)).status_code == 200
    await eventually(lambda: len(mail.with_notice(billing, "extra_minutes_enabled")) == 1)
    await page.goto(f"/app/a/{account_id}/notices")
    row = page.get_by_test_id("notice-row").filter(has_text="Zusätzliche Minuten eingeschaltet")
    await expect(row.get_by_test_id("notice-to")).to_contain_text(billing)
    body = row.get_by_test_id("notice-body")
    await expect(body).to_be_hidden()  # folded away until asked for
    await row.locator("summary").click()
    await expect(body).to_contain_text("Dein Limit: 7,80 €")
    await shot(page, "notices-content")
    await ctx.close()


async def test_thresholds_and_a_recipient_in_english(
    api: Api,
    browser: Browser,  # noqa: F811
) -> None:
    account_id, email = await customer(api, locale="en")
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/notices")
    await page.get_by_test_id("notices-alerts-link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Alert settings")
    thresholds = page.get_by_label("Warn at (percent of the limit)")
    recipients = page.get_by_label("Also to (email addresses)")

    await thresholds.fill("100")
    await page.get_by_test_id("alerts-save").click()
    await expect(page.locator("#alerts-thresholds-error")).to_have_text(
        "No need to enter 100 %: we always notify you at 100 %."
    )
    await thresholds.fill("abc")
    await page.get_by_test_id("alerts-save").click()
    await expect(page.locator("#alerts-thresholds-error")).to_have_text(
        "“abc” is not a whole number. Enter percentages like 50, 75, 90."
    )

    await thresholds.fill("")  # only the stop
    await recipients.fill(", ".join(f"r{n}@example.com" for n in range(6)))
    await page.get_by_test_id("alerts-save").click()
    await expect(page.locator("#alerts-recipients-error")).to_have_text(
        "At most 5 extra recipients."
    )
    await expect(page.locator("#alerts-thresholds-error")).to_have_count(0)
    await recipients.fill("Finance@Example.com, ops@example.com")
    await page.get_by_test_id("alerts-save").click()
    await expect(page.get_by_test_id("flash")).to_have_text("Your alert settings are saved.")
    await expect(page.get_by_test_id("alerts-current")).to_have_text("Now: only at 100 %")
    await expect(recipients).to_have_value("finance@example.com\nops@example.com")
    assert (await api.state(account_id))["alert_thresholds"] == []
    await ctx.close()


async def test_the_overview_forecast_says_too_early_on_a_new_period(
    api: Api,
    browser: Browser,  # noqa: F811
) -> None:
    """A fresh account's period started less than a day ago (calendar month: unless the
    test runs on the 1st, it is more; both answers are checked for what they say)."""
    account_id, email = await customer(api, locale="en")
    assert (await api.enable(account_id, limit_cents=780)).status_code == 200
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await sign_in(page, email)
    forecast = page.get_by_test_id("forecast")
    await expect(forecast.get_by_role("heading")).to_have_text("Forecast to the end of the period")
    too_early = forecast.get_by_test_id("forecast-too-early")
    if await too_early.count():
        await expect(too_early).to_contain_text("Too early for a forecast")
    else:
        await expect(forecast.get_by_test_id("forecast-cost")).to_have_text(
            "Extra cost if you keep this pace: €0.00 plus 19% VAT"
        )
        await expect(forecast.get_by_test_id("forecast-limit")).to_have_text(
            "At this pace the limit will not be reached."
        )
    await ctx.close()
