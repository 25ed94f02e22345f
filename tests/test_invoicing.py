"""Month-end invoicing through the real Stripe SDK against the fake Stripe server.

Accounts here have 6-second billing periods (``short_api``): each test uses included
and extra minutes in one period, and the period's close invoices and charges them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import stripe
from sqlmodel import select

from billing.rules import cost_cents
from devstack.fake_stripe import FakeStripe
from devstack.mail_catcher import MailCatcher
from overtime.db import session_scope
from overtime.models import Account, Invoice, SettingsChange, UsageEntry
from tests.conftest import (
    SHORT_PERIOD_SECONDS,
    STRIPE_WEBHOOK_SECRET,
    Api,
    eventually,
    set_up_in_one_period,
)

STARTER_INCLUDED = 6000
STARTER_PRICE = 39


async def account_with_extra_minutes(
    api: Api, payment_method: str, extra_seconds: int, *, locale: str = "en"
) -> str:
    """An account that uses all included minutes and ``extra_seconds`` in one period."""

    async def set_up() -> str:
        account = await api.create_account(locale=locale)
        added = await api.add_payment_method(account, payment_method)
        assert added.status_code == 200, added.text
        assert (await api.enable(account, limit_minutes=30)).status_code == 200
        assert await api.call(account, "included", STARTER_INCLUDED) == STARTER_INCLUDED
        assert await api.call(account, "extra", extra_seconds) == extra_seconds
        return account

    return await set_up_in_one_period(api, set_up, extra_seconds=extra_seconds)


async def invoices(api: Api, account: str) -> list[dict[str, Any]]:
    response = await api.admin.get(f"/v1/accounts/{account}/invoices")
    assert response.status_code == 200, response.text
    return response.json()


async def invoice_with_status(api: Api, account: str, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = await invoices(api, account)
        assert found and found[0]["status"] in statuses, f"invoices so far: {found}"
        return found[0]

    return await eventually(check, timeout=SHORT_PERIOD_SECONDS * 4)


async def stripe_invoices_of(fake: FakeStripe, account: str) -> list[Any]:
    """The account's invoices at Stripe, by metadata search: like Stripe's, the fake's
    search shows a new invoice only after ``search_visibility_delay``, so wait that out."""
    client = stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.api_base})
    query = {"query": f"metadata['account_id']:'{account}'"}
    deadline = time.monotonic() + fake.search_visibility_delay + 5
    while True:
        found = await asyncio.to_thread(client.v1.invoices.search, params=query)
        if found.data or time.monotonic() > deadline:
            return list(found.data)
        await asyncio.sleep(0.2)


def signed(payload: dict[str, Any], secret: str = STRIPE_WEBHOOK_SECRET) -> tuple[bytes, str]:
    body = json.dumps(payload).encode()
    timestamp = int(time.time())
    signature = stripe.WebhookSignature._compute_signature(f"{timestamp}.{body.decode()}", secret)
    return body, f"t={timestamp},v1={signature}"


async def test_card_invoice_paid_once_and_equal_to_the_ledger(
    short_api: Api, fake_stripe: FakeStripe, mail: MailCatcher
) -> None:
    api = short_api
    # The invoice-item creation runs at Stripe but its answer is lost, and the first
    # charge meets a rate limit: both are retried, and still one invoice, one charge.
    fake_stripe.inject_faults(
        status=500, count=1, path_prefix="/v1/invoiceitems", after_forward=True
    )
    account = await account_with_extra_minutes(api, "pm_card_visa", 125)
    invoice = await invoice_with_status(api, account, "paid")

    assert invoice["extra_seconds"] == 125
    assert invoice["amount_cents"] == cost_cents(125, STARTER_PRICE) == 81  # 81.25 → 81
    assert invoice["currency"] == "eur"
    assert invoice["stripe_invoice_id"].startswith("in_")
    assert invoice["hosted_invoice_url"]

    # The catalog's prices are net (config/plans.toml [tax]): Stripe adds 19 % VAT,
    # 81 ct × 19 % = 15.39 → 15 ct, and charges 96 ct.
    in_stripe = await stripe_invoices_of(fake_stripe, account)
    assert [i.id for i in in_stripe] == [invoice["stripe_invoice_id"]]
    assert in_stripe[0].status == "paid" and in_stripe[0].amount_paid == 96
    assert (in_stripe[0].subtotal, in_stripe[0].total_excluding_tax) == (81, 81)
    assert len(in_stripe[0].lines.data) == 1
    pays = [
        r
        for r in fake_stripe.request_log
        if r.path == f"/v1/invoices/{invoice['stripe_invoice_id']}/pay" and r.status == 200
    ]
    assert len(pays) == 1

    # The ledger of the invoiced period says the same.
    with session_scope(api.settings.resolved_database_url()) as session:
        row = session.exec(select(Invoice).where(Invoice.account_id == account)).one()
        assert (row.amount_cents, row.net_cents, row.tax_cents, row.total_cents) == (81, 81, 15, 96)
        extra = sum(
            u.billed_extra_seconds
            for u in session.exec(
                select(UsageEntry).where(
                    UsageEntry.account_id == account, UsageEntry.period_start == row.period_start
                )
            )
        )
    assert extra == 125

    email = f"{account}@example.com"
    await eventually(lambda: len(mail.with_notice(email, "invoice")) == 1)
    message = mail.with_notice(email, "invoice")[0]
    assert "€0.96" in message.subject
    assert invoice["hosted_invoice_url"] in message.text()
    # The row is written once the mail was accepted: a moment after it arrived.
    await eventually(lambda: _invoice_notices(api, account, 1))


async def test_sepa_invoice_paid(short_api: Api, fake_stripe: FakeStripe) -> None:
    api = short_api
    account = await account_with_extra_minutes(api, "pm_success_de", 60, locale="de")
    state = await api.state(account)
    assert state["payment_method_on_file"] is True
    invoice = await invoice_with_status(api, account, "paid")
    assert invoice["amount_cents"] == STARTER_PRICE
    assert [i.id for i in await stripe_invoices_of(fake_stripe, account)] == [
        invoice["stripe_invoice_id"]
    ]


def pay_calls(fake: FakeStripe, stripe_invoice_id: str) -> int:
    """``/pay`` requests that reached the fake for this invoice (answered or not)."""
    return len(fake.requests("POST", f"/v1/invoices/{stripe_invoice_id}/pay"))


async def test_sepa_invoice_processing_then_paid_charged_once(
    short_api: Api, fake_stripe: FakeStripe, mail: MailCatcher
) -> None:
    """Stripe keeps a SEPA debit processing for days (the fake: a few seconds for
    pm_successDelayed_de). Meanwhile the invoice is "processing", the workflow's reconcile
    reads and webhooks change nothing, no second /pay is sent and no dunning starts."""
    api = short_api
    account = await account_with_extra_minutes(api, "pm_successDelayed_de", 60, locale="de")
    email = f"{account}@example.com"
    pending = await invoice_with_status(api, account, "processing")
    stripe_id = pending["stripe_invoice_id"]
    assert pending["amount_cents"] == STARTER_PRICE
    assert pay_calls(fake_stripe, stripe_id) == 1
    # Stripe's invoice_payment.paid names the invoice: it reaches the running workflow,
    # which re-reads the invoice and keeps waiting (Stripe's word, not the event's).
    event = {
        "id": f"evt_inpay_{account}",
        "object": "event",
        "type": "invoice_payment.paid",
        "data": {
            "object": {"id": f"inpay_{account}", "object": "invoice_payment", "invoice": stripe_id}
        },
    }
    body, header = signed(event)
    answer = await api.anonymous.post(
        "/v1/stripe/webhook", content=body, headers={"Stripe-Signature": header}
    )
    assert answer.status_code == 200
    assert answer.json() == {"received": True, "handled": True}
    # A new card meanwhile is no reason to charge again (it is for failed payments).
    assert (await api.add_payment_method(account, "pm_card_visa")).status_code == 200
    # Longer than a reconcile interval (2 s): re-read, still no second charge.
    await asyncio.sleep(3)
    assert pay_calls(fake_stripe, stripe_id) == 1
    assert mail.with_notice(email, "payment_failed") == []

    paid = await invoice_with_status(api, account, "paid")
    assert paid["stripe_invoice_id"] == stripe_id
    assert pay_calls(fake_stripe, stripe_id) == 1
    assert mail.with_notice(email, "payment_failed") == []
    assert [i.status for i in await stripe_invoices_of(fake_stripe, account)] == ["paid"]


async def test_sepa_debit_failing_after_processing_starts_dunning(
    short_api: Api, fake_stripe: FakeStripe, mail: MailCatcher
) -> None:
    """Dunning only after a real failure: no payment_failed email while the debit is
    processing; once it fails, the email and the next attempt, which debits again."""
    api = short_api
    account = await account_with_extra_minutes(api, "pm_failedDelayed_de", 60)
    email = f"{account}@example.com"
    pending = await invoice_with_status(api, account, "processing")
    stripe_id = pending["stripe_invoice_id"]
    assert mail.with_notice(email, "payment_failed") == []
    assert pay_calls(fake_stripe, stripe_id) == 1

    failed = await invoice_with_status(api, account, "payment_failed")
    assert failed["stripe_invoice_id"] == stripe_id
    await eventually(lambda: len(mail.with_notice(email, "payment_failed")) == 1, timeout=10)
    with session_scope(api.settings.resolved_database_url()) as session:
        row = session.exec(select(Invoice).where(Invoice.account_id == account)).one()
        assert row.failure_code
    # The scheduled retry (2 s in the tests) is a new debit, processing again.
    await invoice_with_status(api, account, "processing")
    assert pay_calls(fake_stripe, stripe_id) == 2


async def test_card_declined_at_attach_is_402_and_saves_nothing(
    api: Api, mail: MailCatcher
) -> None:
    """Stripe refuses pm_card_visa_chargeDeclined* already at attach: the API says why,
    and the account, its history and the workflow stay without a payment method."""
    account = await api.create_account(locale="en")
    for test_id, decline_code, words in [
        ("pm_card_visa_chargeDeclined", "generic_decline", "Your bank declined the card."),
        (
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
            "The card has insufficient funds.",
        ),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "The card has expired."),
        # Stripe: lost and stolen cards read to the customer as a generic decline.
        ("pm_card_visa_chargeDeclinedStolenCard", "stolen_card", "Your bank declined the card."),
    ]:
        answer = await api.add_payment_method(account, test_id)
        assert answer.status_code == 402, answer.text
        body = answer.json()
        assert (body["error"], body["decline_code"]) == ("card_declined", decline_code)
        assert body["detail"].startswith(words) and "Nothing was saved." in body["detail"]
    state = await api.state(account)
    assert state["payment_method_on_file"] is False
    with session_scope(api.settings.resolved_database_url()) as session:
        row = session.get(Account, account)
        assert row is not None and row.payment_method_id is None
        changes = session.exec(
            select(SettingsChange).where(SettingsChange.account_id == account)
        ).all()
        assert [c for c in changes if c.kind == "payment_method"] == []
    refused = await api.admin.put(
        f"/v1/accounts/{account}/extra-minutes", json={"enabled": True, "limit_cents": 1000}
    )
    assert refused.json()["error"] == "payment_method_required"
    # A card that works afterwards is saved as usual.
    assert (await api.add_payment_method(account, "pm_card_visa")).status_code == 200
    await eventually(
        lambda: len(mail.with_notice(f"{account}@example.com", "payment_method_changed")) == 1
    )


async def test_payment_intent_events_are_acknowledged_not_forwarded(api: Api) -> None:
    """Since API 2025-03-31 a PaymentIntent names no invoice: its events are answered 200
    (Stripe stops resending) and change nothing; the invoice events carry the news."""
    for kind in ("payment_intent.succeeded", "payment_intent.processing"):
        event = {
            "id": f"evt_{kind}_{time.monotonic_ns()}",
            "object": "event",
            "type": kind,
            "data": {"object": {"id": "pi_x", "object": "payment_intent", "invoice": "in_x"}},
        }
        body, header = signed(event)
        answer = await api.anonymous.post(
            "/v1/stripe/webhook", content=body, headers={"Stripe-Signature": header}
        )
        assert answer.status_code == 200
        assert answer.json() == {"received": True, "handled": False}


async def test_declined_card_dunning_suspension_and_recovery(
    short_api: Api, mail: MailCatcher
) -> None:
    api = short_api
    account = await account_with_extra_minutes(api, "pm_card_chargeCustomerFail", 90)
    email = f"{account}@example.com"
    invoice = await invoice_with_status(api, account, "payment_failed")
    assert invoice["amount_cents"] == cost_cents(90, STARTER_PRICE)

    # Two scheduled retries (2 s apart in the tests), then extra minutes are suspended.
    async def suspended() -> bool:
        return (await api.state(account))["payment_overdue"]

    await eventually(suspended, timeout=20)
    await eventually(lambda: len(mail.with_notice(email, "payment_failed")) == 3)
    failures = mail.with_notice(email, "payment_failed")
    assert "paused" in failures[-1].subject
    assert all("update your payment method" in m.text().lower() for m in failures)

    # Included minutes still work; extra minutes are refused as overdue.
    async def refused_as_overdue() -> bool:
        state = await api.state(account)
        if state["used_seconds"] < STARTER_INCLUDED:
            await api.call(account, f"burn-{time.monotonic_ns()}", STARTER_INCLUDED)
        answer = await api.authorize(account, f"probe-{time.monotonic_ns()}")
        return answer == {"allowed": False, "reason": "payment_overdue"}

    await eventually(refused_as_overdue, timeout=SHORT_PERIOD_SECONDS * 3)

    # A working card: the invoice is charged at once and extra minutes come back.
    assert (await api.add_payment_method(account, "pm_card_visa")).status_code == 200
    paid = await invoice_with_status(api, account, "paid")
    assert paid["stripe_invoice_id"] == invoice["stripe_invoice_id"]

    async def resumed() -> bool:
        return not (await api.state(account))["payment_overdue"]

    await eventually(resumed, timeout=10)
    assert len(await invoices(api, account)) >= 1
    assert sum(1 for i in await invoices(api, account) if i["status"] == "payment_failed") == 0


async def test_stripe_webhooks_are_verified_and_handled_once(
    short_api: Api, fake_stripe: FakeStripe
) -> None:
    api = short_api
    account = await account_with_extra_minutes(api, "pm_card_visa", 30)
    invoice = await invoice_with_status(api, account, "paid")
    event = {
        "id": f"evt_{account}",
        "object": "event",
        "type": "invoice.paid",
        "data": {"object": {"id": invoice["stripe_invoice_id"], "object": "invoice"}},
    }
    body, header = signed(event)
    bad_body, bad_header = signed(event, secret="whsec_wrong")

    refused = await api.anonymous.post(
        "/v1/stripe/webhook", content=bad_body, headers={"Stripe-Signature": bad_header}
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_signature"
    unsigned = await api.anonymous.post("/v1/stripe/webhook", content=body)
    assert unsigned.status_code == 400

    first = await api.anonymous.post(
        "/v1/stripe/webhook", content=body, headers={"Stripe-Signature": header}
    )
    again = await api.anonymous.post(
        "/v1/stripe/webhook", content=body, headers={"Stripe-Signature": header}
    )
    assert first.status_code == again.status_code == 200
    assert first.json()["received"] is True and "duplicate" not in first.json()
    assert again.json() == {"received": True, "duplicate": True}
    assert (await invoices(api, account))[0]["status"] == "paid"


async def test_enabling_needs_a_payment_method_and_removing_it_disables(
    api: Api, mail: MailCatcher
) -> None:
    account = await api.create_account()
    response = await api.admin.put(
        f"/v1/accounts/{account}/extra-minutes", json={"enabled": True, "limit_cents": 1000}
    )
    assert response.status_code == 409
    assert response.json()["error"] == "payment_method_required"

    added = await api.add_payment_method(account, "pm_card_mastercard")
    assert added.status_code == 200
    assert (added.json()["type"], added.json()["brand"], added.json()["last4"]) == (
        "card",
        "mastercard",
        "4444",
    )
    assert (await api.enable(account, limit_cents=1000)).status_code == 200

    removed = await api.admin.delete(f"/v1/accounts/{account}/payment-method")
    assert removed.status_code == 204
    state = await api.state(account)
    assert (state["enabled"], state["payment_method_on_file"]) == (False, False)
    email = f"{account}@example.com"
    await eventually(lambda: len(mail.with_notice(email, "extra_minutes_disabled")) == 1)
    missing = await api.admin.delete(f"/v1/accounts/{account}/payment-method")
    assert missing.status_code == 404


async def test_payment_setup_hands_out_a_setup_intent(api: Api) -> None:
    account = await api.create_account()
    response = await api.admin.post(f"/v1/accounts/{account}/payment-setup")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["client_secret"].startswith("seti_") and "_secret_" in body["client_secret"]
    assert body["publishable_key"].startswith("pk_")
    bogus = await api.add_payment_method(account, "pm_does_not_exist")
    assert bogus.status_code == 422
    assert bogus.json()["error"] == "invalid_payment_method"


async def _invoice_notices(api: Api, account: str, expected: int) -> bool:
    kinds = [n["kind"] for n in await api.notifications(account)]
    assert kinds.count("invoice") <= expected  # never more than one, even while waiting
    return kinds.count("invoice") == expected
