"""The public price overview (/preise, /prices) and the links to it, on the real stack.

Content is checked over plain HTTP (fast); the layout at 1440 and 390 px and the links from
the extra-minutes page and the free-plan explanation in Debian's chromium.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect
from temporalio.client import Client

from billing.rules import PlanTerms
from overtime.catalog import load_catalog, load_tax
from overtime.settings import Settings
from tests.conftest import Api, start_api, stop_api
from tests.test_web import browser, context, customer, shot, sign_in, text  # noqa: F401

NBSP = "\u00a0"
SPACE = f"[ {NBSP}]"


def money(cents: int, lang: str) -> str:
    whole, frac = divmod(cents, 100)
    if lang == "de":
        return f"{whole:,}".replace(",", ".") + f",{frac:02d} €"
    return f"€{whole:,}.{frac:02d}"


def pattern(words: str) -> str:
    """A regex for text where any space may also be a no-break space."""
    return SPACE.join(re.escape(word) for word in words.split(" "))


def cards(html: str) -> dict[str, str]:
    """Each plan card's text by plan id (tags dropped, whitespace runs made one space)."""
    found = {}
    for match in re.finditer(r'data-testid="plan-([a-z0-9_-]+)"(.*?)</section>', html, re.S):
        body = re.sub(r"<[^>]+>", " ", match.group(2))
        found[match.group(1)] = re.sub(r"[ \t\n]+", " ", body).strip()
    return found


def expected_card(plan: PlanTerms, lang: str, note: str) -> list[str]:
    """What one plan's card must say: fee, included minutes, extra minutes and their price."""
    de = lang == "de"
    available = plan.is_paid and plan.extra_minute_price_cents > 0
    minutes = f"{plan.included_minutes:,}".replace(",", "." if de else ",")
    fee = (
        f"{money(plan.monthly_fee_cents, lang)} {'pro Monat' if de else 'per month'} {note}"
        if plan.monthly_fee_cents
        else ("Kostenlos" if de else "Free")
    )
    lines = [fee, f"{minutes} {'Min. pro Monat' if de else 'min per month'}"]
    if available:
        lines += [
            "Verfügbar" if de else "Available",
            f"{money(plan.extra_minute_price_cents, lang)} {note}",
        ]
    else:
        lines.append("Nicht verfügbar" if de else "Not available")
    return lines


def check_page(html: str, catalog: dict[str, PlanTerms], lang: str, note: str) -> None:
    found = cards(html)
    assert sorted(found) == sorted(catalog), found
    for plan in catalog.values():
        for words in expected_card(plan, lang, note):
            assert re.search(pattern(words), found[plan.plan]), (words, found[plan.plan])
        # Every price carries the note; "free" and "not available" are no prices.
        available = plan.is_paid and plan.extra_minute_price_cents > 0
        priced = (plan.monthly_fee_cents > 0) + available
        assert found[plan.plan].count(note) == priced, (plan.plan, found[plan.plan])
    assert f'<html lang="{lang}">' in html


async def test_price_page_is_public_and_lists_every_plan_in_both_languages(
    api: Api, settings: Settings
) -> None:
    catalog = load_catalog(settings.plans_file)
    tax = load_tax(settings.plans_file)
    assert tax.prices == "net"  # config/plans.toml: net prices, VAT on top
    async with httpx.AsyncClient(base_url=api.base_url, timeout=30) as anonymous:
        german = await anonymous.get("/preise")
        assert german.status_code == 200, german.text
        assert "Preise und Tarife" in german.text
        check_page(german.text, catalog, "de", "zzgl. 19 % MwSt.")
        assert "Alle Preise zzgl. 19 % MwSt." in german.text
        assert german.headers["content-security-policy"].startswith("default-src 'self'")
        assert german.headers["x-frame-options"] == "DENY"
        assert 'href="/login"' in german.text  # not signed in: the way into the web app

        english = await anonymous.get("/prices")
        assert english.status_code == 200
        check_page(english.text, catalog, "en", "plus 19% VAT")

        # /preise follows the browser's language until the visitor picks one...
        by_header = await anonymous.get("/preise", headers={"Accept-Language": "en-GB,de;q=0.5"})
        check_page(by_header.text, catalog, "en", "plus 19% VAT")
        # ...and then the choice, remembered in the session like on every page.
        switched = await anonymous.get("/preise?lang=en")
        check_page(switched.text, catalog, "en", "plus 19% VAT")
        assert "overtime_session" in anonymous.cookies
        again = await anonymous.get("/preise", headers={"Accept-Language": "de"})
        check_page(again.text, catalog, "en", "plus 19% VAT")
        # /prices is English by its address, German only when asked for.
        asked = await anonymous.get("/prices?lang=de")
        check_page(asked.text, catalog, "de", "zzgl. 19 % MwSt.")


async def test_gross_catalog_says_inkl_mwst(
    settings: Settings, temporal_client: Client, tmp_path: Path
) -> None:
    """A catalog meant gross: every price says "inkl. … MwSt." instead."""
    gross = tmp_path / "plans.toml"
    source = settings.plans_file.read_text(encoding="utf-8")
    gross.write_text(
        re.sub(r'prices = "net"', 'prices = "gross"', source).replace(
            'rate_percent = "19"', 'rate_percent = "7"'
        ),
        encoding="utf-8",
    )
    assert load_tax(gross).prices == "gross"
    server, task, gross_api = await start_api(
        settings.model_copy(update={"plans_file": gross}), temporal_client
    )
    try:
        page = await gross_api.anonymous.get("/preise")
        check_page(page.text, load_catalog(gross), "de", "inkl. 7 % MwSt.")
        assert "zzgl." not in page.text
        page = await gross_api.anonymous.get("/prices")
        check_page(page.text, load_catalog(gross), "en", "incl. 7% VAT")
    finally:
        await stop_api(server, task, gross_api)


@pytest.mark.parametrize("width", [1440, 390])
async def test_price_page_fits_desktop_and_phone(
    api: Api,
    browser: Browser,  # noqa: F811
    width: int,
) -> None:
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await page.set_viewport_size({"width": width, "height": 900})
    for lang, title, note in (
        ("de", "Preise und Tarife", "zzgl. 19 % MwSt."),
        ("en", "Prices and plans", "plus 19% VAT"),
    ):
        await page.goto(f"/preise?lang={lang}")
        await expect(page.get_by_role("heading", level=1)).to_have_text(title)
        for plan in ("free", "starter", "business"):
            card = page.get_by_test_id(f"plan-{plan}")
            await expect(card).to_be_visible()
            box = await card.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box
        starter = page.get_by_test_id("plan-starter")
        await expect(starter.get_by_test_id("extra-price")).to_have_text(
            text(f"{'0,39 €' if lang == 'de' else '€0.39'} {note}")
        )
        await expect(
            page.get_by_test_id("plan-free").get_by_test_id("extra-available")
        ).to_have_text("Nicht verfügbar" if lang == "de" else "Not available")
        # Nothing sticks out sideways (no horizontal scrolling on a phone).
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, (lang, width, overflow)
        if width == 390:
            # One plan under the other on a phone.
            free_box = await page.get_by_test_id("plan-free").bounding_box()
            starter_box = await starter.bounding_box()
            assert (
                free_box
                and starter_box
                and starter_box["y"] > free_box["y"] + free_box["height"] - 1
            )
        if lang == "de":
            await shot(page, "price-overview" if width == 1440 else "price-overview-phone")
    await ctx.close()


async def test_extra_minutes_page_and_free_plan_block_link_the_prices(
    api: Api,
    browser: Browser,  # noqa: F811
) -> None:
    paid_id, paid_email = await customer(api, "starter")
    free_id, free_email = await customer(api, "free")
    ctx = await context(browser, api)
    page = await ctx.new_page()

    # A paid plan: the price sentence carries the tax note, and the price page is one click away.
    await sign_in(page, paid_email)
    await page.goto(f"/app/a/{paid_id}/assistant/extra-minutes")
    await expect(page.get_by_test_id("price")).to_have_text(
        text("Preis pro zusätzlicher Minute in Deinem Tarif Starter: 0,39 € zzgl. 19 % MwSt.")
    )
    await page.get_by_test_id("prices-link").click()
    await expect(page).to_have_url(re.compile(r"/preise$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Preise und Tarife")
    # Signed in, the price page leads to the customer's own plan page.
    await expect(page.get_by_test_id("prices-plan-link")).to_have_attribute(
        "href", f"/app/a/{paid_id}/plan"
    )
    await page.get_by_role("button", name="Abmelden").click()

    # The free plan's explanation: the paid plans with tax notes, the price page, plan change.
    await sign_in(page, free_email)
    await page.goto(f"/app/a/{free_id}/assistant/extra-minutes")
    block = page.get_by_test_id("not-eligible")
    await expect(block).to_contain_text(text("0,39 € zzgl. 19 % MwSt."))
    await expect(block.get_by_role("link", name="Tarif wechseln")).to_have_attribute(
        "href", f"/app/a/{free_id}/plan"
    )
    await block.get_by_test_id("prices-link").click()
    await expect(page.get_by_test_id("plan-business")).to_be_visible()
    await ctx.close()
