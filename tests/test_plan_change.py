"""Plan changes mid-period on the real workflow: HTTP API → AccountWorkflow → database.

Rules (README "Plan changes"): the change applies at once; the new plan's included
minutes count for the whole period; extra seconds already used keep the price they were
used at; a free plan switches extra minutes off, and what was used stays billable.
Catalog (config/plans.toml): free 30 min, starter 100 min at 39 ct, business 500 min at 29 ct.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from billing.rules import cost_cents
from devstack.fake_stripe import FakeStripe
from devstack.mail_catcher import MailCatcher
from overtime.db import session_scope
from overtime.models import Account, Invoice, SettingsChange
from tests.conftest import SHORT_PERIOD_SECONDS, Api, eventually, set_up_in_one_period


async def put_plan(api: Api, account: str, plan: str, **extra: Any) -> Any:
    return await api.admin.put(f"/v1/accounts/{account}/plan", json={"plan": plan, **extra})


def history(api: Api, account: str) -> list[SettingsChange]:
    with session_scope(api.settings.resolved_database_url()) as session:
        return list(
            session.exec(
                select(SettingsChange)
                .where(SettingsChange.account_id == account)
                .order_by(SettingsChange.id)  # type: ignore[arg-type]
            )
        )


def account_row(api: Api, account: str) -> Account:
    with session_scope(api.settings.resolved_database_url()) as session:
        row = session.get(Account, account)
        assert row is not None
        return row


async def test_upgrade_from_free_gives_the_new_allowance_at_once(
    api: Api, mail: MailCatcher
) -> None:
    account = await api.create_account(plan="free", locale="en")
    assert await api.call(account, "free-1", 1800) == 1800  # all 30 free minutes
    refused = await api.authorize(account, "free-2")
    assert refused == {"allowed": False, "reason": "included_minutes_exhausted"}
    assert (await api.enable(account, limit_cents=500)).status_code == 409  # not_eligible

    changed = await put_plan(api, account, "starter", reason="customer asked by phone")
    assert changed.status_code == 200, changed.text
    state = changed.json()
    assert state["plan"] == "starter"
    assert (state["included_seconds"], state["included_used_seconds"]) == (6000, 1800)
    assert state["accepting_calls"] is True
    assert state["extra_minute_price_cents"] == 39 and state["monthly_fee_cents"] == 2900
    # The rest of the new allowance is there now, and extra minutes may be switched on.
    assert await api.call(account, "starter-1", 4200) == 4200
    assert (await api.enable(account, limit_cents=390)).status_code == 200
    assert await api.call(account, "starter-2", 900) == 600  # 390 ct buy 600 s at 39 ct

    await eventually(lambda: account_row(api, account).plan == "starter")
    rows = await eventually(lambda: [r for r in history(api, account) if r.kind == "plan"])
    assert [(r.detail, r.actor, r.reason) for r in rows] == [
        ("free → starter", "admin", "customer asked by phone")
    ]
    email = f"{account}@example.com"
    await eventually(lambda: len(mail.with_notice(email, "plan_changed")) == 1)


async def test_extra_minutes_keep_their_price_and_a_eur_limit_still_holds(api: Api) -> None:
    account = await api.create_account(plan="starter")
    assert (await api.enable(account, limit_cents=100)).status_code == 200
    assert await api.call(account, "included", 6000) == 6000
    assert await api.call(account, "at-39", 60) == 60  # 39 ct

    state = (await put_plan(api, account, "business")).json()
    # 500 included minutes now: the 6,000 s used leave 24,000 s; the extra minute stays 39 ct.
    assert state["extra_cost_cents"] == 39
    assert state["priced_usage"] == [
        {"plan": "starter", "seconds": 60, "unit_price_cents": 39, "cost_cents": 39}
    ]
    assert await api.call(account, "included-2", 24_000) == 24_000
    # The limit's other 61 ct buy floor(61 × 60 / 29) = 126 s at 29 ct (61 ct rounded).
    assert await api.call(account, "at-29", 600) == 126
    state = await api.state(account)
    assert state["extra_cost_cents"] == 39 + cost_cents(126, 29) == 100
    assert state["accepting_calls"] is False and state["stop_reason"] == "limit_reached"
    assert [p["seconds"] for p in state["priced_usage"]] == [60, 126]


async def test_downgrade_to_free_switches_extra_minutes_off_and_keeps_what_was_used(
    api: Api, mail: MailCatcher
) -> None:
    account = await api.create_account(plan="starter", locale="de")
    assert (await api.enable(account, limit_minutes=10)).status_code == 200
    assert await api.call(account, "included", 6000) == 6000
    assert await api.call(account, "extra", 120) == 120

    state = (await put_plan(api, account, "free")).json()
    assert state["plan"] == "free" and state["enabled"] is False
    assert state["extra_cost_cents"] == cost_cents(120, 39)  # still billed at period end
    assert state["accepting_calls"] is False
    assert state["stop_reason"] == "included_minutes_exhausted"
    assert (await api.enable(account, limit_minutes=10)).status_code == 409

    kinds = await eventually(
        lambda: (
            [r.kind for r in history(api, account)][-2:] == ["extra_minutes", "plan"]
            and history(api, account)
        )
    )
    assert kinds[-2].new_enabled is False
    email = f"{account}@example.com"
    disabled = await eventually(lambda: mail.with_notice(email, "extra_minutes_disabled"))
    assert len(disabled) == 1


async def test_a_retried_change_applies_once_and_bad_plans_are_refused(api: Api) -> None:
    account = await api.create_account(plan="starter")
    for _ in range(2):
        response = await put_plan(api, account, "business", change_id="upgrade-1")
        assert response.status_code == 200 and response.json()["plan"] == "business"
    await eventually(lambda: len([r for r in history(api, account) if r.kind == "plan"]) == 1)

    unknown = await put_plan(api, account, "platinum")
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_plan"
    assert (await put_plan(api, account, "")).status_code == 422
    assert (await put_plan(api, account, "starter", reason="x" * 501)).status_code == 422
    missing = await put_plan(api, "acct-does-not-exist", "starter")
    assert missing.status_code == 404
    assert (
        await api.anonymous.put(f"/v1/accounts/{account}/plan", json={"plan": "x"})
    ).status_code == 401
    assert (await api.state(account))["plan"] == "business"


async def test_an_invoice_after_a_plan_change_has_one_line_per_price(
    short_api: Api, fake_stripe: FakeStripe
) -> None:
    api = short_api

    async def set_up() -> str:
        account = await api.create_account(plan="starter", locale="en")
        assert (await api.enable(account, limit_minutes=30)).status_code == 200
        assert await api.call(account, "included", 6000) == 6000
        assert await api.call(account, "at-39", 100) == 100
        assert (await put_plan(api, account, "business")).status_code == 200
        assert await api.call(account, "included-2", 24_000) == 24_000
        assert await api.call(account, "at-29", 50) == 50
        return account

    account = await set_up_in_one_period(api, set_up, extra_seconds=150)
    total = cost_cents(100, 39) + cost_cents(50, 29)  # 65 + 24

    def invoiced() -> Invoice | None:
        with session_scope(api.settings.resolved_database_url()) as session:
            row = session.exec(select(Invoice).where(Invoice.account_id == account)).first()
            return row if row is not None and row.status == "paid" else None

    row = await eventually(invoiced, timeout=SHORT_PERIOD_SECONDS * 4)
    assert (row.amount_cents, row.extra_seconds) == (total, 150)
    import stripe

    client = stripe.StripeClient(
        fake_stripe.secret_key, base_addresses={"api": fake_stripe.api_base}
    )
    invoice = client.v1.invoices.retrieve(str(row.stripe_invoice_id))
    assert sorted(line.amount for line in invoice.lines.data) == sorted(
        [cost_cents(100, 39), cost_cents(50, 29)]
    )
    assert invoice.amount_paid == invoice.total
