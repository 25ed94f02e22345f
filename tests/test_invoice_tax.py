"""Invoices a German business can book: lines in the customer's language, VAT, dunning dates.

The invoicing activity runs for real (Temporal's ActivityEnvironment) against the
session's fake Stripe through the stripe SDK and writes the session's database; the
dunning test goes through the whole stack (API, workflows, SMTP catcher). Tax rates are
made unique per test by their display name, so tests sharing the fake stay independent.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import stripe
from sqlmodel import select
from temporalio.testing import ActivityEnvironment

from activities.invoicing import InvoicingActivities
from billing.rules import cost_cents
from devstack.fake_stripe import FakeStripe
from devstack.mail_catcher import MailCatcher
from overtime.catalog import TaxTerms, load_tax
from overtime.db import session_scope
from overtime.models import Account, Invoice
from overtime.settings import PROJECT_ROOT, Settings
from overtime.stripe_gateway import StripeGateway
from tests.conftest import Api, eventually
from tests.test_invoicing import account_with_extra_minutes, invoice_with_status
from tests.test_stripe_gateway import path_shape
from workflows.types import (
    AccountProfile,
    ChargeRequest,
    InvoiceInput,
    InvoiceLine,
    InvoiceState,
)

BERLIN = ZoneInfo("Europe/Berlin")
SHIPPED_CATALOG = PROJECT_ROOT / "config" / "plans.toml"
NOVEMBER = (datetime(2026, 11, 1, tzinfo=BERLIN), datetime(2026, 12, 1, tzinfo=BERLIN))


def terms(prices: str = "net") -> TaxTerms:
    """19 % German VAT under a display name no other test uses."""
    return TaxTerms(
        prices=prices,  # type: ignore[arg-type]
        rate_percent=Decimal("19"),
        display_name=f"MwSt. {uuid.uuid4().hex[:6]}",
    )


def raw_client(fake: FakeStripe) -> stripe.StripeClient:
    return stripe.StripeClient(fake.secret_key, base_addresses={"api": fake.api_base})


def new_account(database_url: str, locale: str = "de") -> AccountProfile:
    account_id = f"tax-{uuid.uuid4().hex[:12]}"
    now = datetime.now(UTC)
    with session_scope(database_url) as session:
        session.add(
            Account(
                account_id=account_id,
                email=f"{account_id}@example.com",
                plan="business",
                locale=locale,
                timezone="Europe/Berlin",
                created_at=now,
            )
        )
        session.commit()
    return AccountProfile(account_id, f"{account_id}@example.com", locale, "Europe/Berlin", now)


def invoicing(database_url: str, fake: FakeStripe, tax: TaxTerms) -> InvoicingActivities:
    """A fresh activity instance with a fresh gateway (no tax-rate cache), as a new
    worker process would have."""
    gateway = StripeGateway(fake.secret_key, api_base=fake.api_base)
    return InvoicingActivities(database_url, lambda: gateway, tax)


def november_input(profile: AccountProfile, lines: list[InvoiceLine]) -> InvoiceInput:
    return InvoiceInput(
        profile=profile,
        period_start=NOVEMBER[0].astimezone(UTC),
        period_end=NOVEMBER[1].astimezone(UTC),
        extra_seconds=sum(line.seconds for line in lines),
        unit_price_cents=lines[-1].unit_price_cents,
        amount_cents=sum(line.amount_cents for line in lines),
        lines=lines if len(lines) > 1 else [],
    )


def line(seconds: int, price: int, plan: str) -> InvoiceLine:
    return InvoiceLine(seconds, price, cost_cents(seconds, price), plan)


def create(acts: InvoicingActivities, request: InvoiceInput) -> InvoiceState:
    state: InvoiceState = ActivityEnvironment().run(acts.create_invoice, request)
    return state


def row_of(database_url: str, account_id: str) -> Invoice:
    with session_scope(database_url) as session:
        return session.exec(select(Invoice).where(Invoice.account_id == account_id)).one()


def tax_rates_named(fake: FakeStripe, display_name: str) -> list[Any]:
    listed = raw_client(fake).v1.tax_rates.list(params={"limit": 100}).auto_paging_iter()
    return [rate for rate in listed if rate.display_name == display_name]


# --- net and gross catalogs -----------------------------------------------------------


def test_net_prices_two_lines_after_a_plan_change_plus_19_percent(
    database_url: str, fake_stripe: FakeStripe
) -> None:
    """Starter until mid-November, then Business: one line per price, in German, each
    minutes × price = its amount, VAT added per line as Stripe rounds it."""
    profile = new_account(database_url, "de")
    tax = terms("net")
    lines = [line(1596, 39, "starter"), line(600, 29, "business")]
    assert [item.amount_cents for item in lines] == [1037, 290]  # 1037.4 → 1037; 290

    state = create(invoicing(database_url, fake_stripe, tax), november_input(profile, lines))

    invoice = raw_client(fake_stripe).v1.invoices.retrieve(state.stripe_invoice_id)
    assert [item.description for item in invoice.lines.data] == [
        "Zusätzliche Minuten (Starter): 26 Min. 36 Sek. × 0,39 €/Min., Zeitraum 01.11.–30.11.2026",
        "Zusätzliche Minuten (Business): 10 Min. × 0,29 €/Min., Zeitraum 01.11.–30.11.2026",
    ]
    assert [item.amount for item in invoice.lines.data] == [1037, 290]
    # 19 % of each line, rounded half up per line: 197.03 → 197, 55.1 → 55.
    assert [[t.amount for t in item.taxes] for item in invoice.lines.data] == [[197], [55]]
    assert [t.tax_behavior for t in invoice.total_taxes] == ["exclusive"]
    assert (invoice.subtotal, invoice.total_excluding_tax) == (1327, 1327)
    assert (invoice.total, invoice.amount_due, invoice.total_taxes[0].amount) == (1579, 1579, 252)
    assert invoice.status == "open"
    [rate] = tax_rates_named(fake_stripe, tax.display_name)
    assert (rate.percentage, rate.inclusive, rate.country, rate.tax_type) == (
        19.0,
        False,
        "DE",
        "vat",
    )

    # What is charged and mailed is the total; the row keeps the ledger's amount apart.
    assert state.amount_cents == 1579
    row = row_of(database_url, profile.account_id)
    assert (row.amount_cents, row.net_cents, row.tax_cents, row.total_cents) == (
        1327,
        1327,
        252,
        1579,
    )
    assert (row.extra_seconds, row.status) == (2196, "open")


def test_gross_prices_contain_19_percent(database_url: str, fake_stripe: FakeStripe) -> None:
    """Gross catalog: the customer pays exactly the catalog amount; the invoice shows the
    VAT inside it (1037 / 1.19 = 871.43 → net 871, VAT 166). English account."""
    profile = new_account(database_url, "en")
    tax = terms("gross")
    state = create(
        invoicing(database_url, fake_stripe, tax),
        november_input(profile, [line(1596, 39, "starter")]),
    )

    invoice = raw_client(fake_stripe).v1.invoices.retrieve(state.stripe_invoice_id)
    [only] = invoice.lines.data
    assert only.description == "Extra minutes: 26 min 36 s × €0.39/min, period 1–30 Nov 2026"
    assert (only.amount, only.taxes[0].amount, only.taxes[0].taxable_amount) == (1037, 166, 871)
    assert only.taxes[0].tax_behavior == "inclusive"
    assert (invoice.subtotal, invoice.total, invoice.amount_due) == (1037, 1037, 1037)
    assert (invoice.subtotal_excluding_tax, invoice.total_excluding_tax) == (871, 871)
    row = row_of(database_url, profile.account_id)
    assert (row.amount_cents, row.net_cents, row.tax_cents, row.total_cents) == (
        1037,
        871,
        166,
        1037,
    )
    assert state.amount_cents == 1037


def test_tax_is_rounded_per_line_as_stripe_does(fake_stripe: FakeStripe) -> None:
    """Two 50 ct lines at 19 %: 9.5 ct each → 10 + 10 = 20 ct (not 19 on the sum)."""
    gateway = StripeGateway(fake_stripe.secret_key, api_base=fake_stripe.api_base)
    tax = terms("net")
    rate = gateway.ensure_tax_rate(
        percentage=tax.rate_percent, inclusive=False, display_name=tax.display_name, country="DE"
    )
    client = raw_client(fake_stripe)
    customer = gateway.ensure_customer(f"round-{uuid.uuid4().hex[:8]}", "round@example.com")
    invoice = client.v1.invoices.create(
        params={"customer": customer, "auto_advance": False, "default_tax_rates": [rate]}
    )
    for _ in range(2):
        client.v1.invoice_items.create(
            params={"customer": customer, "invoice": invoice.id, "amount": 50, "currency": "eur"}
        )
    again = client.v1.invoices.retrieve(invoice.id)
    assert [item.taxes[0].amount for item in again.lines.data] == [10, 10]
    assert (again.subtotal, again.total, again.total_taxes[0].amount) == (100, 120, 20)


# --- exactly once, and the customer's language ---------------------------------------


def test_tax_rate_is_created_once_across_retries_and_workers(
    database_url: str, fake_stripe: FakeStripe
) -> None:
    tax = terms("net")
    # The first create reaches Stripe but its answer is lost: the SDK retries with the
    # same idempotency key and gets the first answer replayed.
    fake_stripe.inject_faults(
        status=500, count=1, path_prefix="/v1/tax_rates", method="POST", after_forward=True
    )
    try:
        for _ in range(2):  # two accounts, each on a fresh worker, one retried twice
            profile = new_account(database_url)
            request = november_input(profile, [line(120, 39, "starter")])
            acts = invoicing(database_url, fake_stripe, tax)
            first = create(acts, request)
            assert create(acts, request) == first  # an activity retry: same invoice
    finally:
        fake_stripe.clear_faults()
    [rate] = tax_rates_named(fake_stripe, tax.display_name)  # one rate, found again
    key = f"tax_rate:DE:19:exclusive:{tax.display_name}:DE"
    creates = [r for r in fake_stripe.requests("POST", "/v1/tax_rates") if r.idempotency_key == key]
    # Executed once (its answer lost), then replayed; never created a second time.
    assert [r.injected for r in creates][:1] == ["fault-after"]
    assert all(r.replayed and r.object_id == rate.id for r in creates[1:]) and creates[1:]


def test_preferred_locales_follow_the_account_language(
    database_url: str, fake_stripe: FakeStripe
) -> None:
    profile = new_account(database_url, "de")
    request = november_input(profile, [line(60, 39, "starter")])
    acts = invoicing(database_url, fake_stripe, load_tax(SHIPPED_CATALOG))
    state = create(acts, request)
    with session_scope(database_url) as session:
        account = session.get(Account, profile.account_id)
        assert account is not None and account.stripe_customer_id is None
    # The invoice names its customer (a search would lag, as Stripe's does).
    invoice = raw_client(fake_stripe).v1.invoices.retrieve(state.stripe_invoice_id)
    customer = raw_client(fake_stripe).v1.customers.retrieve(str(invoice.customer))
    assert customer.metadata["account_id"] == profile.account_id
    assert customer.preferred_locales == ["de-DE"]

    # The customer switches the web app to English; the next invoice run (a retry here)
    # updates Stripe, which then writes the invoice PDF and receipts in English.
    with session_scope(database_url) as session:
        account = session.get(Account, profile.account_id)
        assert account is not None
        account.locale = "en"
        session.add(account)
        session.commit()
    create(acts, request)
    again = raw_client(fake_stripe).v1.customers.retrieve(customer.id)
    assert again.preferred_locales == ["en-GB"]


def test_eu_business_with_a_vat_id_gets_a_reverse_charge_invoice(
    database_url: str, fake_stripe: FakeStripe
) -> None:
    """An Austrian business with its VAT id: no German VAT, the § 13b note, the id and
    ``tax_exempt="reverse"`` on the Stripe customer. A German VAT id changes nothing."""
    austrian = new_account(database_url, "de")
    german = new_account(database_url, "de")
    for profile, vat_id in ((austrian, "atu 1234 5678"), (german, "DE123456789")):
        with session_scope(database_url) as session:
            account = session.get(Account, profile.account_id)
            assert account is not None
            account.vat_id = vat_id
            session.add(account)
            session.commit()
    tax = terms("net")
    acts = invoicing(database_url, fake_stripe, tax)
    client = raw_client(fake_stripe)

    state = create(acts, november_input(austrian, [line(1596, 39, "starter")]))
    invoice = client.v1.invoices.retrieve(state.stripe_invoice_id)
    assert (invoice.subtotal, invoice.total, invoice.total_taxes) == (1037, 1037, [])
    assert invoice.footer is not None
    assert "Steuerschuldnerschaft des Leistungsempfängers" in invoice.footer
    assert invoice.customer_tax_exempt == "reverse"
    customer_id = str(invoice.customer)
    ids = client.v1.customers.tax_ids.list(customer_id).data
    assert [(t.type, t.value) for t in ids] == [("eu_vat", "ATU12345678")]
    assert (row_of(database_url, austrian.account_id).tax_cents, state.amount_cents) == (0, 1037)

    domestic = create(acts, november_input(german, [line(1596, 39, "starter")]))
    assert domestic.amount_cents == 1037 + 197
    assert client.v1.invoices.retrieve(domestic.stripe_invoice_id).footer is None


def test_the_shipped_catalog_is_net_19_percent() -> None:
    tax = load_tax(SHIPPED_CATALOG)
    assert (tax.prices, tax.rate_percent, tax.inclusive) == ("net", Decimal("19"), False)
    assert (tax.note("de"), tax.note("en")) == ("zzgl. 19 % MwSt.", "plus 19% VAT")
    gross = TaxTerms(prices="gross", rate_percent=Decimal("7.5"))
    assert (gross.note("de"), gross.note("en")) == ("inkl. 7,5 % MwSt.", "incl. 7.5% VAT")


# --- requests per activity: what a month-end invoice costs ----------------------------


def test_month_end_activities_stay_within_stripe_calls_per_activity(
    database_url: str,
) -> None:
    """``stripe_calls_per_activity`` is the most requests one invoicing activity makes on
    the month-end path (what capacity planning and bench_month_end.py count on; the budget
    itself is kept per request by overtime/stripe_rate.py). Counted here on the
    month-end path, against a Stripe no other test uses: the customer's settings are
    written once (no read) and remembered, the invoice this run created is finalized
    without being read back, and the charge reads the invoice once."""
    budget = Settings.model_fields["stripe_calls_per_activity"].default
    with FakeStripe() as fake:
        gateway = StripeGateway(fake.secret_key, api_base=fake.api_base)
        tax = load_tax(SHIPPED_CATALOG)
        acts = InvoicingActivities(database_url, lambda: gateway, tax)
        profile = new_account(database_url, "de")
        account_id = profile.account_id
        # As the payment page leaves it: a customer with a card, its id on the account.
        customer = gateway.ensure_customer(account_id, profile.email)
        gateway.attach_default_payment_method(customer, "pm_card_visa")
        with session_scope(database_url) as session:
            account = session.get(Account, account_id)
            assert account is not None
            account.stripe_customer_id = customer
            session.add(account)
            session.commit()
        # The worker process's first invoice looks the tax rate up; later ones know it.
        gateway.ensure_tax_rate(
            percentage=tax.rate_percent,
            inclusive=tax.inclusive,
            display_name=tax.display_name,
            country=tax.country,
            jurisdiction=tax.jurisdiction,
        )
        env = ActivityEnvironment()
        counts: list[int] = []

        def counted(activity: Any, arg: Any) -> tuple[InvoiceState, list[str]]:
            before = len(fake.request_log)
            state: InvoiceState = env.run(activity, arg)
            made = [f"{r.method} {path_shape(r.path)}" for r in fake.request_log[before:]]
            counts.append(len(made))
            return state, made

        def period(month: int) -> InvoiceInput:
            start = datetime(2026, month, 1, tzinfo=BERLIN).astimezone(UTC)
            end = datetime(2026, month + 1, 1, tzinfo=BERLIN).astimezone(UTC)
            return InvoiceInput(profile, start, end, 120, 39, cost_cents(120, 39))

        def synced() -> str | None:
            with session_scope(database_url) as session:
                account = session.get(Account, account_id)
                assert account is not None
                return account.stripe_customer_synced

        created, made = counted(acts.create_invoice, period(9))
        assert made == [
            "POST /v1/customers/{id}",  # preferred_locales and tax_exempt, written unread
            "GET /v1/invoices/search",
            "POST /v1/invoices",
            "POST /v1/invoiceitems",
            "POST /v1/invoices/{id}/finalize",  # its answer is the invoice: no read after
        ]
        # 2 min at 0,39 € = 78 ct, + 19 % VAT (14.82 → 15 ct): 93 ct due.
        assert (created.status, created.amount_cents) == ("open", 93)
        assert synced() == f"{customer}|de-DE|"
        client = raw_client(fake)
        assert client.v1.customers.retrieve(customer).preferred_locales == ["de-DE"]

        charge = ChargeRequest(account_id, period(9).period_start, created.stripe_invoice_id, 0)
        paid, made = counted(acts.pay_invoice, charge)
        assert made == ["GET /v1/invoices/{id}", "POST /v1/invoices/{id}/pay"]
        assert paid.status == "paid"
        # A retry of the charge (its answer lost): read, paid, no second /pay.
        again, made = counted(acts.pay_invoice, charge)
        assert (again.status, made) == ("paid", ["GET /v1/invoices/{id}"])

        # Next month, nothing changed: no customer request at all.
        october, made = counted(acts.create_invoice, period(10))
        assert len(made) == 4 and not [m for m in made if "/customers" in m]
        # An activity retry finds (or replays) the invoice and reads it; finalized once.
        assert counted(acts.create_invoice, period(10))[0] == october
        finalized = fake.requests("POST", f"/v1/invoices/{october.stripe_invoice_id}/finalize")
        assert [r.replayed for r in finalized] == [False]

        # The customer switches to English: written again, once.
        with session_scope(database_url) as session:
            account = session.get(Account, account_id)
            assert account is not None
            account.locale = "en"
            session.add(account)
            session.commit()
        _, made = counted(acts.create_invoice, period(11))
        assert made[0] == "POST /v1/customers/{id}" and len(made) == 5
        assert client.v1.customers.retrieve(customer).preferred_locales == ["en-GB"]
        assert synced() == f"{customer}|en-GB|"

        assert max(counts) == budget  # exact: the most any of these activities made


def test_settings_changed_while_syncing_are_not_recorded(database_url: str) -> None:
    """Settings read, written to Stripe, then changed in the web app before the record:
    nothing is recorded, so the next run writes the new ones instead of trusting the
    record of the old."""
    profile = new_account(database_url, "de")
    acts = InvoicingActivities(database_url, lambda: None, load_tax(SHIPPED_CATALOG))  # type: ignore[arg-type,return-value]
    acts._record_synced(profile.account_id, "cus_x", "de", "cus_x|de-DE|")
    with session_scope(database_url) as session:
        account = session.get(Account, profile.account_id)
        assert account is not None and account.stripe_customer_synced == "cus_x|de-DE|"
        account.locale = "en"
        session.add(account)
        session.commit()
    acts._record_synced(profile.account_id, "cus_x", "de", "cus_x|de-DE|")  # a stale run
    with session_scope(database_url) as session:
        account = session.get(Account, profile.account_id)
        assert account is not None and account.stripe_customer_synced is None


# --- the fake refuses what Stripe refuses ----------------------------------------------


def test_fake_stripe_tax_rates_and_items_behave_like_stripe(fake_stripe: FakeStripe) -> None:
    client = raw_client(fake_stripe)
    rate = client.v1.tax_rates.create(
        params={"display_name": "USt", "percentage": "7", "inclusive": False, "country": "de"}
    )
    assert (rate.country, rate.percentage, rate.active) == ("DE", 7.0, True)
    assert client.v1.tax_rates.retrieve(rate.id).id == rate.id
    with pytest.raises(stripe.InvalidRequestError, match="percentage"):
        client.v1.tax_rates.update(rate.id, params={"percentage": 19})  # type: ignore[typeddict-unknown-key]
    with pytest.raises(stripe.InvalidRequestError, match="percentage"):
        client.v1.tax_rates.create(
            params={"display_name": "x", "percentage": "101", "inclusive": False}
        )
    with pytest.raises(stripe.InvalidRequestError):  # Stripe has no tax-rate search
        client.raw_request("get", "/v1/tax_rates/search", query="metadata['a']:'b'")
    archived = client.v1.tax_rates.update(rate.id, params={"active": False})
    assert archived.active is False
    active_ids = [r.id for r in client.v1.tax_rates.list(params={"active": True, "limit": 100})]
    assert rate.id not in active_ids

    customer = client.v1.customers.create(params={"email": "items@example.com"})
    invoice = client.v1.invoices.create(params={"customer": customer.id, "auto_advance": False})
    with pytest.raises(stripe.InvalidRequestError, match="inactive"):
        client.v1.invoice_items.create(
            params={
                "customer": customer.id,
                "invoice": invoice.id,
                "amount": 100,
                "currency": "eur",
                "tax_rates": [rate.id],
            }
        )
    with pytest.raises(stripe.InvalidRequestError, match="only specify one"):
        client.v1.invoice_items.create(
            params={
                "customer": customer.id,
                "invoice": invoice.id,
                "amount": 100,
                "unit_amount_decimal": Decimal("0.65"),
                "currency": "eur",
            }
        )
    # Why the gateway sends amounts: 30 s at 29 ct/min cost 14.5 → 15 ct by our rules,
    # but 30 × 0.483333333333 (the closest 12-decimal per-second price) is 14 ct.
    item = client.v1.invoice_items.create(
        params={
            "customer": customer.id,
            "invoice": invoice.id,
            "quantity": 30,
            "unit_amount_decimal": Decimal("0.483333333333"),
            "currency": "eur",
        }
    )
    assert (item.amount, item.quantity, cost_cents(30, 29)) == (14, 30, 15)


# --- failed payments: the next attempt, in the email ---------------------------------


async def test_payment_failed_email_names_the_next_attempt(
    short_api: Api, mail: MailCatcher
) -> None:
    api = short_api
    account = await account_with_extra_minutes(api, "pm_card_chargeCustomerFail", 90, locale="de")
    email = f"{account}@example.com"
    db = api.settings.resolved_database_url()

    def next_attempt() -> datetime | None:
        with session_scope(db) as session:
            row = session.exec(select(Invoice).where(Invoice.account_id == account)).first()
            return row.next_attempt_at if row is not None else None

    first_due = await eventually(next_attempt, timeout=30, interval=0.05)
    await invoice_with_status(api, account, "payment_failed")
    # Two scheduled retries (2 s in the tests), then the last failure: nothing is due.
    await eventually(lambda: len(mail.with_notice(email, "payment_failed")) == 3, timeout=30)
    failures = mail.with_notice(email, "payment_failed")
    assert next_attempt() is None

    # 59 ct for 90 s at 0,39 €/min, 11 ct VAT (11.21), 70 ct due.
    assert all("0,70 €" in m.text() for m in failures)
    first = failures[0].text()
    assert "Zahlungsmethode aktualisieren" in first and "Rechnung bezahlen" in first
    last = failures[-1]
    assert "pausiert" in last.subject
    assert "letzte automatische Versuch" in last.text()
    assert "Wir versuchen es am" not in last.text()

    # The date and time of the next attempt, and the VAT, come from the invoice row
    # (overtime.invoice_mail.invoice_email_context, merged by the notification activity).
    named = re.search(r"Wir versuchen es am (\d\d\.\d\d\.\d{4}), (\d\d:\d\d) Uhr", first)
    assert named is not None, first
    stated = datetime.strptime(" ".join(named.groups()), "%d.%m.%Y %H:%M").replace(tzinfo=BERLIN)
    # The minute the row says (the poll may have seen the second failure's, 2 s later).
    assert timedelta(0) <= first_due - stated < timedelta(minutes=1, seconds=5)
    assert "nächster Versuch am" in failures[0].subject
    assert "netto 0,59 € + 19 % MwSt. 0,11 €" in first
