"""Plan changes in the web app and the admin console, on the real stack.

The customer's page posts to the live account workflow (``AccountService.change_plan``);
what the workflow decides is read back from its snapshot (``GET /state``) and from the
settings history in the database.
"""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlmodel import select

from billing.rules import PlanTerms
from overtime.db import session_scope
from overtime.models import SettingsChange
from starter.web.plan import is_step_down
from tests.conftest import Api, eventually
from tests.test_web import (  # noqa: F401
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    browser,
    context,
    customer,
    shot,
    sign_in,
    text,
)


def words(sentence: str) -> re.Pattern[str]:
    """The sentence exactly, where a space may also be the no-break space of an amount."""
    return re.compile("[ \u00a0]".join(re.escape(w) for w in sentence.split(" ")))


def plan_rows(api: Api, account_id: str) -> list[SettingsChange]:
    with session_scope(api.settings.resolved_database_url()) as session:
        return list(
            session.exec(
                select(SettingsChange)
                .where(SettingsChange.account_id == account_id, SettingsChange.kind == "plan")
                .order_by(SettingsChange.id)  # type: ignore[arg-type]
            )
        )


async def form_fields(page: Page, plan: str) -> dict[str, str]:
    """The hidden fields of the plan page's form for ``plan`` (as the browser would post)."""
    form = page.get_by_test_id(f"plan-{plan}").locator("form")
    return {
        name: await form.locator(f'input[name="{name}"]').input_value()
        for name in ("csrf_token", "change_id", "plan")
    }


async def post(ctx: BrowserContext, path: str, fields: dict[str, str]) -> int:
    """A form post with the browser's cookies; the status after redirects."""
    response = await ctx.request.post(path, form=fields)
    return response.status


async def test_free_customer_upgrades_and_gets_extra_minutes(api: Api, browser: Browser) -> None:  # noqa: F811
    account_id, email = await customer(api, "free")
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await sign_in(page, email)

    # The free-plan explanation leads to the plan page.
    await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
    await page.get_by_test_id("not-eligible").get_by_role("link", name="Tarif wechseln").click()
    await expect(page).to_have_url(re.compile(f"/app/a/{account_id}/plan$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Tarif wechseln")
    await expect(page.get_by_test_id("plan-free")).to_have_attribute("data-current", "true")
    await expect(page.get_by_test_id("plan-starter").get_by_test_id("extra-price")).to_have_text(
        text("0,39 € zzgl. 19 % MwSt.")
    )
    await expect(page.get_by_test_id("plan-rules")).to_contain_text(
        "Die Inklusivminuten des neuen Tarifs gelten für den ganzen laufenden Abrechnungszeitraum"
    )
    await shot(page, "plan-change")
    # The same page in English, with the English tax note.
    await page.goto(f"/app/a/{account_id}/plan?lang=en")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Change plan")
    await expect(page.get_by_test_id("plan-business").get_by_test_id("extra-price")).to_have_text(
        text("€0.29 plus 19% VAT")
    )
    await page.goto(f"/app/a/{account_id}/plan?lang=de")

    # An upgrade applies on the first click, and the live workflow has it at once.
    await page.get_by_test_id("switch-starter").click()
    await expect(page.get_by_test_id("flash")).to_have_text(
        "Tarif gewechselt. Der neue Tarif gilt ab sofort."
    )
    await expect(page.get_by_test_id("plan-starter")).to_have_attribute("data-current", "true")
    await expect(page.get_by_test_id("plan-free")).not_to_have_attribute("data-current", "true")
    state = await api.state(account_id)
    assert (state["plan"], state["included_seconds"]) == ("starter", 100 * 60)

    # Extra minutes are available now: the page shows the switch, and switching on works.
    async def switch_shown() -> bool:
        await page.goto(f"/app/a/{account_id}/assistant/extra-minutes")
        return await page.get_by_role("switch").count() == 1

    await eventually(switch_shown, timeout=40)
    await expect(page.get_by_test_id("price")).to_contain_text(text("0,39 € zzgl. 19 % MwSt."))
    enabled = await api.enable(account_id, limit_cents=1000)
    assert enabled.status_code == 200, enabled.text
    assert (await api.state(account_id))["enabled"] is True
    await eventually(lambda: len(plan_rows(api, account_id)) == 1)
    row = plan_rows(api, account_id)[0]
    assert (row.detail, row.actor) == ("free → starter", f"customer:{email}")
    await ctx.close()


async def test_downgrade_to_free_asks_first_without_javascript(api: Api, browser: Browser) -> None:  # noqa: F811
    account_id, email = await customer(api, "starter")
    assert (await api.enable(account_id, limit_cents=1000)).status_code == 200
    assert await api.call(account_id, "down-included", 6000) == 6000  # all 100 included
    assert await api.call(account_id, "down-extra", 600) == 600  # 10 extra minutes: 3,90 €
    ctx = await context(browser, api, java_script_enabled=False)
    page = await ctx.new_page()
    await page.set_viewport_size({"width": 390, "height": 860})
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/plan")
    await expect(page.get_by_test_id("plan-starter")).to_have_attribute("data-current", "true")

    # The step down answers with what it means; nothing changes yet.
    await page.get_by_test_id("switch-free").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Wechsel zu Free bestätigen")
    confirm = page.get_by_test_id("plan-confirm")
    await expect(confirm.get_by_test_id("confirm-extra")).to_have_text(
        "Zusätzliche Minuten werden sofort ausgeschaltet: Sind die Inklusivminuten "
        "aufgebraucht, nimmt Safina keine Anrufe mehr an."
    )
    await expect(confirm.get_by_test_id("confirm-included")).to_have_text(
        "Im Tarif Free hast Du 30 Inklusivminuten pro Monat. Du hast in diesem Zeitraum "
        "schon 100,0 Min. genutzt, es bleiben Dir 0,0 Min. bis zum Ende des Zeitraums."
    )
    await expect(confirm.get_by_test_id("confirm-billed")).to_have_text(
        words(
            "Die bisher genutzten zusätzlichen Minuten (3,90 € zzgl. 19 % MwSt.) werden am "
            "Ende des Zeitraums zum bisherigen Preis abgerechnet."
        )
    )
    await shot(page, "plan-downgrade-confirm")
    state = await api.state(account_id)
    assert (state["plan"], state["enabled"]) == ("starter", True)

    # "Cancel" keeps everything as it was.
    await page.get_by_role("link", name="Abbrechen").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Tarif wechseln")
    assert (await api.state(account_id))["plan"] == "starter"

    # Confirmed: free plan, extra minutes off; what was used stays billed.
    await page.get_by_test_id("switch-free").click()
    await page.get_by_test_id("confirm-submit").click()
    await expect(page.get_by_test_id("flash")).to_have_text(
        "Tarif gewechselt. Der neue Tarif gilt ab sofort."
    )
    await expect(page.get_by_test_id("plan-free")).to_have_attribute("data-current", "true")
    state = await api.state(account_id)
    assert (state["plan"], state["enabled"], state["extra_cost_cents"]) == ("free", False, 390)
    assert not (await api.authorize(account_id, "down-after"))["allowed"]
    await ctx.close()


async def test_a_form_posted_twice_changes_the_plan_once(api: Api, browser: Browser) -> None:  # noqa: F811
    account_id, email = await customer(api, "free")
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await sign_in(page, email)
    await page.goto(f"/app/a/{account_id}/plan")
    to_starter = await form_fields(page, "starter")
    path = f"/app/a/{account_id}/plan"

    # A double click: the same form twice at the same moment.
    statuses = await asyncio.gather(post(ctx, path, to_starter), post(ctx, path, to_starter))
    assert statuses == [200, 200]
    # A reload of the answer: the same form once more.
    assert await post(ctx, path, to_starter) == 200
    assert (await api.state(account_id))["plan"] == "starter"

    await page.goto(path)
    to_business = await form_fields(page, "business")
    assert to_business["change_id"] != to_starter["change_id"]
    assert await post(ctx, path, to_business) == 200
    assert (await api.state(account_id))["plan"] == "business"

    # The old form from another browser of the same customer: the workflow knows its id.
    other = await context(browser, api)
    other_page = await other.new_page()
    await sign_in(other_page, email)
    csrf = await other_page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    assert await post(other, path, {**to_starter, "csrf_token": csrf}) == 200
    assert (await api.state(account_id))["plan"] == "business"

    await eventually(lambda: len(plan_rows(api, account_id)) == 2)
    assert [r.detail for r in plan_rows(api, account_id)] == [
        "free → starter",
        "starter → business",
    ]
    await other.close()
    await ctx.close()


async def test_plan_page_is_only_for_its_own_customer(api: Api, browser: Browser) -> None:  # noqa: F811
    mine, my_email = await customer(api, "free")
    theirs, _ = await customer(api, "free")
    ctx = await context(browser, api)
    page = await ctx.new_page()
    # Not signed in: to the login, and back after it.
    await page.goto(f"/app/a/{mine}/plan")
    await expect(page).to_have_url(re.compile(r"/login\?next="))
    await page.locator("#email").fill(my_email)
    await page.locator("#password").fill("correct horse battery")
    await page.locator("#password").press("Enter")
    await expect(page).to_have_url(re.compile(f"/app/a/{mine}/plan$"))
    fields = await form_fields(page, "starter")

    response = await page.goto(f"/app/a/{theirs}/plan")
    assert response is not None and response.status == 404
    assert await post(ctx, f"/app/a/{theirs}/plan", fields) == 404
    assert (await api.state(theirs))["plan"] == "free"
    # Without the CSRF token nothing happens either.
    assert await post(ctx, f"/app/a/{mine}/plan", {**fields, "csrf_token": "x"}) == 403
    # An unknown plan is refused with a reason.
    assert await post(ctx, f"/app/a/{mine}/plan", {**fields, "plan": "platinum"}) == 422
    assert (await api.state(mine))["plan"] == "free"
    await ctx.close()


async def test_admin_changes_the_plan_with_a_reason(api: Api, browser: Browser) -> None:  # noqa: F811
    account_id, _ = await customer(api, "free")
    ctx = await context(browser, api)
    page = await ctx.new_page()
    await sign_in(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    await page.goto(f"/admin/accounts/{account_id}")
    form = page.get_by_test_id("admin-plan")
    await expect(form.get_by_label("Plan")).to_have_value("free")

    # No reason, no change (the browser asks for one; the server insists too).
    fields = {
        "csrf_token": await form.locator('input[name="csrf_token"]').input_value(),
        "change_id": await form.locator('input[name="change_id"]').input_value(),
        "plan": "business",
        "reason": "  ",
    }
    refused = await ctx.request.post(f"/admin/accounts/{account_id}/plan", form=fields)
    assert refused.status == 200  # back on the account page, with the flash
    assert "A plan change needs a reason" in await refused.text()
    assert (await api.state(account_id))["plan"] == "free"

    await form.get_by_label("Plan").select_option("business")
    await form.get_by_label("Reason (for the audit trail)").fill("Ticket 4711: upgrade by phone")
    await form.get_by_role("button", name="Change plan").click()
    await expect(page.get_by_test_id("flash")).to_have_text(
        "Plan changed to business; the workflow applied it."
    )
    assert (await api.state(account_id))["plan"] == "business"
    await eventually(lambda: len(plan_rows(api, account_id)) == 1)
    row = plan_rows(api, account_id)[0]
    assert (row.detail, row.reason, row.actor) == (
        "free → business",
        "Ticket 4711: upgrade by phone",
        f"admin:{ADMIN_EMAIL}",
    )
    # The console's settings history lists it.
    await page.reload()
    await expect(page.get_by_test_id("history")).to_contain_text(f"admin:{ADMIN_EMAIL}")
    await ctx.close()


def test_which_changes_ask_first() -> None:
    """Only a change that may take something away asks for confirmation."""
    free = PlanTerms("free", 0, 30, 0)
    starter = PlanTerms("starter", 2900, 100, 39)
    business = PlanTerms("business", 9900, 500, 29)
    assert not is_step_down(free, starter) and not is_step_down(starter, business)
    assert is_step_down(business, starter) and is_step_down(starter, free)
    assert is_step_down(business, PlanTerms("lean", 9900, 400, 29))  # fewer included minutes
