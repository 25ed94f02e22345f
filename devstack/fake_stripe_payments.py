"""Paying emulated invoices the way Stripe does: test payment methods, the invoice's
PaymentIntent, SEPA debits that stay ``processing`` (part of ``devstack.fake_stripe``).

* **Test payment methods with Stripe's documented meanings** (https://docs.stripe.com/testing,
  "Declined payments" and "SEPA Direct Debit"). The cards of the decline table cannot be
  attached to a customer: ``POST /v1/payment_methods/{id}/attach``, a SetupIntent confirm
  (also the Stripe.js stand-in's, which sends the typed card number) and ``/pay`` with such
  a ``payment_method`` answer 402 ``card_error`` with Stripe's ``code``, ``decline_code``,
  ``message`` and ``doc_url``; the SetupIntent stays ``requires_payment_method`` and shows
  ``last_setup_error``. ``pm_card_chargeCustomerFail`` attaches and fails every charge;
  ``pm_card_authenticationRequired`` fails every off-session charge with
  ``authentication_required``. SEPA test IBANs go ``processing`` and settle later: after
  ``sepa_processing_seconds`` or, for the "Delayed" ones, ``sepa_delayed_processing_seconds``,
  succeeding or failing with ``generic_decline`` / ``insufficient_funds``.
* **Outcomes follow the card number or IBAN**, not the id: a PaymentMethod is recognised by
  localstripe's ``fingerprint`` (the first 16 hex digits of the SHA-1 of the number or IBAN),
  so a test card or IBAN typed into the browser behaves exactly like its ``pm_...`` id.
  Cards and IBANs outside the tables succeed, as Stripe's other test numbers do.
* **One PaymentIntent per invoice**, created when the invoice is finalised (amount due,
  ``payment_method_types`` card and sepa_debit) and confirmed again by every ``/pay``, so the
  invoice has exactly one ``invoice_payment``. A failed attempt leaves it
  ``requires_payment_method`` with ``last_payment_error``; a SEPA attempt leaves it
  ``processing`` (the invoice stays ``open``, another ``/pay`` is refused) until a timer on
  the proxy's event loop settles it, events included, whether or not anybody reads; a read
  after the due time settles it too. These intents live here, not in localstripe (which
  cannot confirm a PaymentIntent twice), and are served by ``GET /v1/payment_intents/{id}``
  and ``GET /v1/payment_intents`` (merged with localstripe's own intents).
* **Events** (``invoice.*``, ``invoice_payment.paid``, ``payment_intent.*``) go to the
  emulator's ``events`` bus at each transition, with the object as an unexpanded GET shows it.

Every attempt makes one Charge (``latest_charge``; ``pending`` while a debit processes,
then ``succeeded`` or ``failed`` with ``failure_code``), served by ``GET /v1/charges/{id}``
and ``GET /v1/charges`` (merged with localstripe's own), so "charged once" stays countable.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import string
import sys
import time
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from devstack.fake_stripe import _Ctx, _Emulator, _Invoice, _Payment, _Reply

Json = dict[str, Any]

# Where an error's doc_url points, in the form Stripe's API sends (as fake_stripe_shapes).
_ERROR_DOCS = "https://stripe.com/docs/error-codes/"
# The proxy's own calls to localstripe (the browser confirms with a publishable key).
INTERNAL_AUTHORIZATION = "Bearer sk_test_overtime_proxy"


@dataclass(frozen=True)
class Decline:
    """Why a payment (or attaching a card) failed, as Stripe reports it."""

    code: str
    decline_code: str
    message: str

    @property
    def doc_url(self) -> str:
        return _ERROR_DOCS + self.code.replace("_", "-")

    def error(self, **objects: Json | str | None) -> Json:
        """As ``last_payment_error`` / ``last_setup_error``, or an error body's ``error``
        (``objects``: ``charge``, ``payment_method``, ``payment_intent``, ``setup_intent``)."""
        error: Json = {
            "type": "card_error",
            "code": self.code,
            "decline_code": self.decline_code,
            "message": self.message,
            "doc_url": self.doc_url,
        }
        error.update({name: value for name, value in objects.items() if value is not None})
        return error


GENERIC_DECLINE = Decline("card_declined", "generic_decline", "Your card was declined.")
INSUFFICIENT_FUNDS = Decline(
    "card_declined", "insufficient_funds", "Your card has insufficient funds."
)
LOST_CARD = Decline("card_declined", "lost_card", "Your card was declined.")
STOLEN_CARD = Decline("card_declined", "stolen_card", "Your card was declined.")
EXPIRED_CARD = Decline("expired_card", "expired_card", "Your card has expired.")
INCORRECT_CVC = Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.")
PROCESSING_ERROR = Decline(
    "processing_error",
    "processing_error",
    "An error occurred while processing your card. Try again in a little bit.",
)
AUTHENTICATION_REQUIRED = Decline(
    "authentication_required",
    "authentication_required",
    "Your card was declined. This transaction requires authentication.",
)
# SEPA debits that fail after processing: not card declines, so the code is the reason.
SEPA_GENERIC_FAILURE = Decline("generic_decline", "generic_decline", "The debit was declined.")
SEPA_INSUFFICIENT_FUNDS = Decline(
    "insufficient_funds",
    "insufficient_funds",
    "The bank account has insufficient funds to cover this debit.",
)


@dataclass(frozen=True)
class StripeTestCard:
    """A test card number and what Stripe does with it."""

    number: str
    brand: str
    attach_decline: Decline | None = None  # refused already when attached
    charge_decline: Decline | None = None  # attaches; every charge fails
    requires_authentication: bool = False  # every off-session charge fails

    @property
    def decline(self) -> Decline | None:
        """How an off-session charge with this card fails, if it does."""
        if self.requires_authentication:
            return AUTHENTICATION_REQUIRED
        return self.attach_decline or self.charge_decline


@dataclass(frozen=True)
class StripeTestIban:
    """A SEPA test IBAN (DE): every debit is ``processing`` first, then settles."""

    iban: str
    delayed: bool = False  # settles after sepa_delayed_processing_seconds
    failure: Decline | None = None


_VISA = StripeTestCard("4242424242424242", "visa")
_VISA_DEBIT = StripeTestCard("4000056655665556", "visa")
_MASTERCARD = StripeTestCard("5555555555554444", "mastercard")
_DECLINED = StripeTestCard("4000000000000002", "visa", attach_decline=GENERIC_DECLINE)
_INSUFFICIENT = StripeTestCard("4000000000009995", "visa", attach_decline=INSUFFICIENT_FUNDS)
_LOST = StripeTestCard("4000000000009987", "visa", attach_decline=LOST_CARD)
_STOLEN = StripeTestCard("4000000000009979", "visa", attach_decline=STOLEN_CARD)
_EXPIRED = StripeTestCard("4000000000000069", "visa", attach_decline=EXPIRED_CARD)
_INCORRECT_CVC = StripeTestCard("4000000000000127", "visa", attach_decline=INCORRECT_CVC)
_PROCESSING_ERROR = StripeTestCard("4000000000000119", "visa", attach_decline=PROCESSING_ERROR)
_CUSTOMER_FAIL = StripeTestCard("4000000000000341", "visa", charge_decline=GENERIC_DECLINE)
_AUTHENTICATION = StripeTestCard("4000002760003184", "visa", requires_authentication=True)

_SEPA_SUCCESS = StripeTestIban("DE89370400440532013000")
_SEPA_SUCCESS_DELAYED = StripeTestIban("DE08370400440532013003", delayed=True)
_SEPA_FAILED = StripeTestIban("DE62370400440532013001", failure=SEPA_GENERIC_FAILURE)
_SEPA_FAILED_DELAYED = StripeTestIban(
    "DE78370400440532013004", delayed=True, failure=SEPA_GENERIC_FAILURE
)
_SEPA_INSUFFICIENT = StripeTestIban("DE65370400440002222227", failure=SEPA_INSUFFICIENT_FUNDS)
# Stripe's "payment amount exceeds the account's weekly volume / transaction limit" IBANs.
_SEPA_VOLUME_LIMIT = StripeTestIban(
    "DE65370400440000343434",
    failure=Decline(
        "charge_exceeds_source_limit",
        "charge_exceeds_source_limit",
        "This debit would exceed the account's weekly payment volume limit.",
    ),
)
_SEPA_TRANSACTION_LIMIT = StripeTestIban(
    "DE27370400440000121212",
    failure=Decline(
        "charge_exceeds_weekly_limit",
        "charge_exceeds_weekly_limit",
        "This debit exceeds the account's transaction volume limit.",
    ),
)

# Stripe's test PaymentMethod ids; the proxy replaces them by real localstripe
# PaymentMethods built from the card or IBAN (fake_stripe's ``materialise``).
MAGIC_PAYMENT_METHODS: dict[str, StripeTestCard | StripeTestIban] = {
    "pm_card_visa": _VISA,
    "pm_card_visa_debit": _VISA_DEBIT,
    "pm_card_mastercard": _MASTERCARD,
    "pm_card_visa_chargeDeclined": _DECLINED,
    "pm_card_chargeDeclined": _DECLINED,  # legacy alias of pm_card_visa_chargeDeclined
    "pm_card_visa_chargeDeclinedInsufficientFunds": _INSUFFICIENT,
    "pm_card_visa_chargeDeclinedLostCard": _LOST,
    "pm_card_visa_chargeDeclinedStolenCard": _STOLEN,
    "pm_card_chargeDeclinedExpiredCard": _EXPIRED,
    "pm_card_chargeDeclinedIncorrectCvc": _INCORRECT_CVC,
    "pm_card_chargeDeclinedProcessingError": _PROCESSING_ERROR,
    "pm_card_chargeCustomerFail": _CUSTOMER_FAIL,
    "pm_card_authenticationRequired": _AUTHENTICATION,
    "pm_success_de": _SEPA_SUCCESS,
    "pm_successDelayed_de": _SEPA_SUCCESS_DELAYED,
    "pm_failed_de": _SEPA_FAILED,
    "pm_failedDelayed_de": _SEPA_FAILED_DELAYED,
    "pm_insufficientFunds_de": _SEPA_INSUFFICIENT,
    "pm_exceedsWeeklyVolumeLimit_de": _SEPA_VOLUME_LIMIT,
    "pm_exceedsWeeklyTransactionLimit_de": _SEPA_TRANSACTION_LIMIT,
    # Newer copies of Stripe's testing page name the SEPA ids with a ``sepaDebit_`` infix;
    # both spellings are accepted, so either copy of the docs works here.
    "pm_sepaDebit_success_de": _SEPA_SUCCESS,
    "pm_sepaDebit_successDelayed_de": _SEPA_SUCCESS_DELAYED,
    "pm_sepaDebit_failed_de": _SEPA_FAILED,
    "pm_sepaDebit_failedDelayed_de": _SEPA_FAILED_DELAYED,
    "pm_sepaDebit_insufficientFunds_de": _SEPA_INSUFFICIENT,
    "pm_sepaDebit_exceedsWeeklyVolumeLimit_de": _SEPA_VOLUME_LIMIT,
    "pm_sepaDebit_exceedsWeeklyTransactionLimit_de": _SEPA_TRANSACTION_LIMIT,
}


def _fingerprint(value: str) -> str:
    """localstripe's ``fingerprint`` of a card number or (normalised) IBAN."""
    return hashlib.sha1(value.encode("utf-8")).hexdigest()[:16]


_CARDS = {
    _fingerprint(spec.number): spec
    for spec in MAGIC_PAYMENT_METHODS.values()
    if isinstance(spec, StripeTestCard)
}
_IBANS = {
    _fingerprint(spec.iban): spec
    for spec in MAGIC_PAYMENT_METHODS.values()
    if isinstance(spec, StripeTestIban)
}


def card_for_number(number: Any) -> StripeTestCard | None:
    if not isinstance(number, str):
        return None
    return _CARDS.get(_fingerprint(re.sub(r"\s", "", number)))


def card_of(method: Json) -> StripeTestCard | None:
    """The test card behind a (localstripe) PaymentMethod, if it is one."""
    card = method.get("card") if method.get("type") == "card" else None
    return _CARDS.get(str(card.get("fingerprint"))) if isinstance(card, dict) else None


def iban_of(method: Json) -> StripeTestIban | None:
    debit = method.get("sepa_debit") if method.get("type") == "sepa_debit" else None
    return _IBANS.get(str(debit.get("fingerprint"))) if isinstance(debit, dict) else None


_ID_ALPHABET = string.ascii_letters + string.digits


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


@dataclass
class InvoiceIntent:
    """The PaymentIntent of one emulated invoice (proxy-owned)."""

    id: str
    invoice: str  # not shown: PaymentIntents have no ``invoice`` field since 2025-03-31
    customer: str
    amount: int
    currency: str
    created: int
    client_secret: str
    status: str = "requires_payment_method"
    payment_method: str | None = None
    last_payment_error: Json | None = None
    amount_received: int = 0
    canceled_at: int | None = None
    cancellation_reason: str | None = None
    attempt: int = 0  # confirmations so far; a settle timer only acts on its own attempt
    settles_at: float | None = None  # time.monotonic() when a processing debit settles
    settle_failure: Decline | None = None
    method: Json | None = None  # the PaymentMethod of the latest attempt, as read then
    latest_charge: str | None = None

    def json(self) -> Json:
        return {
            "id": self.id,
            "object": "payment_intent",
            # Invoices allow card and SEPA debits (the pinned API's name for the list).
            "allowed_payment_method_types": ["card", "sepa_debit"],
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": self.amount_received,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": self.canceled_at,
            "cancellation_reason": self.cancellation_reason,
            "capture_method": "automatic",
            "client_secret": self.client_secret,
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "description": "Payment for Invoice",
            "excluded_payment_method_types": None,
            "last_payment_error": dict(self.last_payment_error)
            if self.last_payment_error
            else None,
            "latest_charge": self.latest_charge,
            "livemode": False,
            "metadata": {},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": self.payment_method,
            "payment_method_configuration_details": None,
            "payment_method_options": {
                "card": {
                    "installments": None,
                    "mandate_options": None,
                    "network": None,
                    "request_three_d_secure": "automatic",
                },
                "sepa_debit": {},
            },
            "payment_method_types": ["card", "sepa_debit"],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": self.status,
            "transfer_data": None,
            "transfer_group": None,
        }


@dataclass
class InvoiceCharge:
    """One attempt on an invoice's PaymentIntent."""

    id: str
    payment_intent: str
    customer: str
    amount: int
    currency: str
    created: int
    method: Json  # the PaymentMethod charged, as read then
    status: str  # pending | succeeded | failed
    failure: Decline | None = None

    def json(self) -> Json:
        succeeded = self.status == "succeeded"
        kind = str(self.method.get("type"))
        details: Json = {"type": kind}
        if kind == "card":
            card = self.method.get("card") or {}
            details["card"] = {
                "brand": card.get("brand"),
                "country": card.get("country"),
                "exp_month": card.get("exp_month"),
                "exp_year": card.get("exp_year"),
                "fingerprint": card.get("fingerprint"),
                "funding": card.get("funding"),
                "last4": card.get("last4"),
                "network": card.get("brand"),
            }
        elif kind == "sepa_debit":
            debit = self.method.get("sepa_debit") or {}
            details["sepa_debit"] = {
                "bank_code": debit.get("bank_code"),
                "branch_code": None,
                "country": debit.get("country"),
                "fingerprint": debit.get("fingerprint"),
                "last4": debit.get("last4"),
                "mandate": None,
            }
        if self.status == "failed" and self.failure is not None:
            outcome: Json | None = {
                "network_status": "declined_by_network",
                "reason": self.failure.decline_code,
                "risk_level": "normal",
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined",
            }
        elif succeeded:
            outcome = {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "seller_message": "Payment complete.",
                "type": "authorized",
            }
        else:
            outcome = None
        return {
            "id": self.id,
            "object": "charge",
            "amount": self.amount,
            "amount_captured": self.amount if succeeded else 0,
            "amount_refunded": 0,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": None,
            "billing_details": self.method.get("billing_details")
            or {"address": None, "email": None, "name": None, "phone": None},
            "calculated_statement_descriptor": None,
            "captured": succeeded,
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "description": "Payment for Invoice",
            "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": self.failure.code if self.status == "failed" and self.failure else None,
            "failure_message": self.failure.message
            if self.status == "failed" and self.failure
            else None,
            "fraud_details": {},
            "livemode": False,
            "metadata": {},
            "on_behalf_of": None,
            "outcome": outcome,
            "paid": succeeded,
            "payment_intent": self.payment_intent,
            "payment_method": self.method.get("id"),
            "payment_method_details": details,
            "receipt_email": None,
            "receipt_number": None,
            "receipt_url": None,
            "refunded": False,
            "review": None,
            "shipping": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": self.status,
            "transfer_data": None,
            "transfer_group": None,
        }


def _now() -> int:
    return int(time.time())


class InvoicePayments:
    """The proxy's invoice PaymentIntents and everything that moves them; one per emulator,
    used only on the proxy's event loop."""

    def __init__(self, emulator: _Emulator) -> None:
        self.emulator = emulator
        # fake_stripe's own module: ``__main__`` when run with ``python -m``, so its
        # StripeApiError is the class the emulator's dispatch catches.
        self.fake: ModuleType = sys.modules[type(emulator).__module__]
        self.intents: dict[str, InvoiceIntent] = {}
        self.charges: dict[str, InvoiceCharge] = {}
        self.setup_errors: dict[str, Json] = {}  # SetupIntent id → last_setup_error
        self.sepa_processing_seconds = 1.0
        self.sepa_delayed_processing_seconds = 6.0
        self._settling: set[asyncio.Task[None]] = set()

    def routes(self) -> list[tuple[str, re.Pattern[str], Callable[..., Awaitable[_Reply | None]]]]:
        return [
            ("GET", re.compile(r"/v1/payment_intents"), self.list_payment_intents),
            ("GET", re.compile(r"/v1/payment_intents/(?P<id>pi_\w+)"), self.retrieve_intent),
            ("POST", re.compile(r"/v1/payment_intents/(?P<id>pi_\w+)(/\w+)?"), self.refuse_write),
            ("GET", re.compile(r"/v1/charges"), self.list_charges),
            ("GET", re.compile(r"/v1/charges/(?P<id>ch_\w+)"), self.retrieve_charge),
            (
                "POST",
                re.compile(r"/v1/payment_methods/(?P<id>pm_\w+)/attach"),
                self.attach_payment_method,
            ),
            (
                "POST",
                re.compile(r"/v1/setup_intents/(?P<id>seti_\w+)/confirm"),
                self.confirm_setup_intent,
            ),
            ("GET", re.compile(r"/v1/setup_intents/(?P<id>seti_\w+)"), self.retrieve_setup_intent),
        ]

    # -- helpers -------------------------------------------------------------------------

    def card_error(self, decline: Decline, **objects: Json | str | None) -> Exception:
        """The 402 Stripe answers a decline with."""
        fields = decline.error(**objects)
        for name in ("type", "code", "message"):
            fields.pop(name)
        return self.fake.StripeApiError(
            402, decline.message, type_="card_error", code=decline.code, **fields
        )

    def internal_ctx(self, ctx: _Ctx | None = None) -> _Ctx:
        """A context for the proxy's own reads (timers have no request; the browser's
        publishable key may not read PaymentMethods)."""
        if ctx is None:
            return self.fake._Ctx(
                method="GET",
                path="",
                query_string="",
                query={},
                params={},
                raw_body=b"",
                content_type="",
                authorization=INTERNAL_AUTHORIZATION,
            )
        return replace(ctx, authorization=INTERNAL_AUTHORIZATION)

    def emit(self, ctx: _Ctx | None, type_: str, obj: Json) -> None:
        events = getattr(self.emulator, "events", None)
        if events is None:  # the event bus is not wired in (yet)
            return
        events.emit(
            type_,
            obj,
            request_id=getattr(ctx, "request_id", None),
            idempotency_key=getattr(ctx, "idempotency_key", None),
        )

    async def emit_invoice(self, ctx: _Ctx | None, type_: str, invoice: _Invoice) -> None:
        self.emit(ctx, type_, await self.emulator.invoice_json(self.internal_ctx(ctx), invoice, []))

    def intent_of(self, invoice: _Invoice) -> InvoiceIntent | None:
        if not invoice.payments:
            return None
        return self.intents.get(invoice.payments[0].payment_intent)

    def processing(self, invoice: _Invoice) -> bool:
        intent = self.intent_of(invoice)
        return intent is not None and intent.status == "processing"

    def payment_json(self, invoice: _Invoice, payment: _Payment, expand_intent: bool) -> Json:
        """One ``invoice_payment`` of ``invoice.payments.data``."""
        intent: Any = payment.payment_intent
        if expand_intent and intent in self.intents:
            intent = self.intents[intent].json()
        return {
            "id": payment.id,
            "object": "invoice_payment",
            "amount_paid": payment.amount if payment.status == "paid" else None,
            "amount_requested": payment.amount,
            "created": payment.created,
            "currency": invoice.currency,
            "invoice": invoice.id,
            "is_default": True,
            "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": intent},
            "status": payment.status,
            "status_transitions": {
                "canceled_at": payment.canceled_at,
                "paid_at": payment.paid_at,
            },
        }

    # -- the invoice's PaymentIntent -------------------------------------------------------

    def open_intent(self, ctx: _Ctx | None, invoice: _Invoice) -> None:
        """At finalisation: the PaymentIntent every attempt will confirm."""
        intent_id = _new_id("pi_")
        intent = InvoiceIntent(
            id=intent_id,
            invoice=invoice.id,
            customer=invoice.customer,
            amount=invoice.total,
            currency=invoice.currency,
            created=_now(),
            client_secret=f"{intent_id}_secret_{_new_id('')}",
        )
        self.intents[intent_id] = intent
        invoice.payments = [
            self.fake._Payment(_new_id("inpay_"), intent_id, invoice.total, intent.created)
        ]
        self.emit(ctx, "payment_intent.created", intent.json())

    async def confirm(self, ctx: _Ctx, invoice: _Invoice, method: Json) -> None:
        """One payment attempt with ``method`` (a localstripe PaymentMethod, read just now);
        raises the 402 of a decline after recording it."""
        intent = self.intent_of(invoice)
        if intent is None:  # an invoice finalised before it had an amount cannot get here
            raise self.fake.StripeApiError(400, "This invoice has no payment to attempt.")
        invoice.attempt_count += 1
        intent.attempt += 1
        intent.payment_method = str(method["id"])
        intent.method = method
        intent.last_payment_error = None
        charge = InvoiceCharge(
            id=_new_id("ch_"),
            payment_intent=intent.id,
            customer=invoice.customer,
            amount=intent.amount,
            currency=intent.currency,
            created=_now(),
            method=method,
            status="pending",
        )
        self.charges[charge.id] = charge
        intent.latest_charge = charge.id
        if method.get("type") == "sepa_debit":
            iban = iban_of(method)
            delayed = iban is not None and iban.delayed
            delay = (
                self.sepa_delayed_processing_seconds if delayed else self.sepa_processing_seconds
            )
            intent.status = "processing"
            intent.settles_at = time.monotonic() + delay
            intent.settle_failure = iban.failure if iban is not None else None
            asyncio.get_running_loop().call_later(
                max(delay, 0.0), self._settle_later, intent.id, intent.attempt
            )
            self.emit(ctx, "payment_intent.processing", intent.json())
            return
        card = card_of(method)
        decline = card.decline if card is not None else None
        if decline is None:
            await self._succeeded(ctx, invoice, intent)
            return
        await self._failed(ctx, invoice, intent, decline)
        if decline is AUTHENTICATION_REQUIRED:
            await self.emit_invoice(ctx, "invoice.payment_action_required", invoice)
        raise self.card_error(
            decline, charge=charge.id, payment_intent=intent.json(), payment_method=method
        )

    async def _succeeded(self, ctx: _Ctx | None, invoice: _Invoice, intent: InvoiceIntent) -> None:
        now = _now()
        intent.status, intent.amount_received = "succeeded", intent.amount
        self._settle_charge(intent, "succeeded", None)
        payment = invoice.payments[0]
        payment.status, payment.paid_at = "paid", now
        invoice.state, invoice.paid_at = "paid", now
        self.emit(ctx, "payment_intent.succeeded", intent.json())
        self.emit(ctx, "invoice_payment.paid", self.payment_json(invoice, payment, False))
        await self.emit_invoice(ctx, "invoice.paid", invoice)
        await self.emit_invoice(ctx, "invoice.payment_succeeded", invoice)

    async def _failed(
        self, ctx: _Ctx | None, invoice: _Invoice, intent: InvoiceIntent, decline: Decline
    ) -> None:
        intent.status = "requires_payment_method"
        self._settle_charge(intent, "failed", decline)
        intent.last_payment_error = decline.error(
            charge=intent.latest_charge, payment_method=intent.method
        )
        self.emit(ctx, "payment_intent.payment_failed", intent.json())
        await self.emit_invoice(ctx, "invoice.payment_failed", invoice)

    def _settle_charge(self, intent: InvoiceIntent, status: str, failure: Decline | None) -> None:
        charge = self.charges.get(intent.latest_charge or "")
        if charge is not None:
            charge.status, charge.failure = status, failure

    def _settle_later(self, intent_id: str, attempt: int) -> None:
        """The SEPA timer (proxy loop): settle, with events, even if nobody reads."""
        intent = self.intents.get(intent_id)
        if intent is None or intent.attempt != attempt or intent.status != "processing":
            return
        task = asyncio.ensure_future(self._settle(intent))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def settle_due(self, invoice: _Invoice) -> None:
        """On every read: a debit past its due time has settled, timer or not."""
        intent = self.intent_of(invoice)
        if (
            intent is not None
            and intent.status == "processing"
            and intent.settles_at is not None
            and intent.settles_at <= time.monotonic()
        ):
            await self._settle(intent)

    async def _settle(self, intent: InvoiceIntent) -> None:
        # No await before the state changes: the timer and a reader cannot both settle,
        # and no lock is taken (readers call this while holding the invoice's lock).
        invoice = self.emulator.invoices.get(intent.invoice)
        if intent.status != "processing" or invoice is None:
            return
        intent.settles_at = None
        if intent.settle_failure is None:
            await self._succeeded(None, invoice, intent)
        else:
            await self._failed(None, invoice, intent, intent.settle_failure)

    async def cancel(self, ctx: _Ctx, invoice: _Invoice, reason: str | None) -> None:
        """Void or paid out of band: the PaymentIntent is canceled, its payment too."""
        intent = self.intent_of(invoice)
        if intent is None:
            return
        now = _now()
        payment = invoice.payments[0]
        if payment.status == "open":
            payment.status, payment.canceled_at = "canceled", now
        if intent.status not in ("succeeded", "canceled"):
            intent.status, intent.canceled_at, intent.cancellation_reason = "canceled", now, reason
            intent.settles_at = None
            self.emit(ctx, "payment_intent.canceled", intent.json())

    # -- routes --------------------------------------------------------------------------

    async def retrieve_intent(self, ctx: _Ctx, id: str) -> _Reply | None:
        intent = self.intents.get(id)
        if intent is None:
            return None  # localstripe's own PaymentIntents
        invoice = self.emulator.invoices.get(intent.invoice)
        if invoice is not None:
            await self.settle_due(invoice)
        return self.fake._json_reply(200, intent.json())

    async def refuse_write(self, ctx: _Ctx, id: str) -> _Reply | None:
        if id not in self.intents:
            return None
        raise self.fake.StripeApiError(
            400,
            "Changing an invoice's PaymentIntent directly is not emulated by fake_stripe; "
            "pay, void or mark the invoice instead.",
        )

    async def list_payment_intents(self, ctx: _Ctx) -> _Reply:
        params = ctx.query
        self.fake._check_params(
            params, {"customer", "created", "limit", "starting_after", "ending_before", "expand"}
        )
        await self._settle_all_due()
        found = [intent.json() for intent in self.intents.values()]
        # localstripe cannot filter its PaymentIntents: all of them, filtered here.
        found += await self._backend_list(ctx, "/v1/payment_intents", {})
        return self._list_reply("/v1/payment_intents", params, found)

    async def _settle_all_due(self) -> None:
        for intent in list(self.intents.values()):
            invoice = self.emulator.invoices.get(intent.invoice)
            if invoice is not None:
                await self.settle_due(invoice)

    async def retrieve_charge(self, ctx: _Ctx, id: str) -> _Reply | None:
        charge = self.charges.get(id)
        if charge is None:
            return None  # localstripe's own charges
        invoice = self.emulator.invoices.get(self._invoice_of_charge(charge))
        if invoice is not None:
            await self.settle_due(invoice)
        return self.fake._json_reply(200, charge.json())

    def _invoice_of_charge(self, charge: InvoiceCharge) -> str:
        intent = self.intents.get(charge.payment_intent)
        return intent.invoice if intent is not None else ""

    async def list_charges(self, ctx: _Ctx) -> _Reply:
        params = ctx.query
        self.fake._check_params(
            params,
            {
                "customer",
                "payment_intent",
                "created",
                "limit",
                "starting_after",
                "ending_before",
                "expand",
            },
        )
        await self._settle_all_due()
        customer = params.get("customer")
        # localstripe filters charges by customer itself (and knows no payment_intent filter).
        found = [charge.json() for charge in self.charges.values()]
        found += await self._backend_list(
            ctx, "/v1/charges", {"customer": customer} if customer else {}
        )
        if params.get("payment_intent"):
            found = [c for c in found if c.get("payment_intent") == params["payment_intent"]]
        return self._list_reply("/v1/charges", params, found)

    def _list_reply(self, url: str, params: Json, found: list[Json]) -> _Reply:
        """One page of a Stripe list over ``found`` (newest first)."""
        limit = self.fake._as_int(params.get("limit"), "limit") or 10
        if not 1 <= limit <= 100:
            raise self.fake.StripeApiError(400, "limit must be between 1 and 100.", param="limit")
        customer = params.get("customer")
        if customer:
            found = [o for o in found if o.get("customer") == customer]
        found = [o for o in found if _created_matches(params.get("created"), o)]
        # Newest first; within a second, the later made first (``found`` is in creation order).
        found = sorted(reversed(found), key=lambda o: int(o.get("created") or 0), reverse=True)
        ids = [o["id"] for o in found]
        if params.get("starting_after") in ids:
            found = found[ids.index(params["starting_after"]) + 1 :]
        elif params.get("ending_before") in ids:
            found = found[: ids.index(params["ending_before"])][-limit:]
        return self.fake._json_reply(
            200,
            {"object": "list", "url": url, "data": found[:limit], "has_more": len(found) > limit},
        )

    async def _backend_list(self, ctx: _Ctx, path: str, filters: dict[str, str]) -> list[Json]:
        """All of a localstripe list (paged through), brands corrected."""
        found: list[Json] = []
        after: str | None = None
        while True:
            query = urlencode(
                {**filters, "limit": "100", **({"starting_after": after} if after else {})}
            )
            page = await self.emulator.backend_json(ctx, "GET", path, query=query)
            found.extend(self.emulator.decorate(page.get("data") or []))
            if not page.get("has_more") or not page.get("data"):
                return found
            after = str(page["data"][-1]["id"])

    async def attach_payment_method(self, ctx: _Ctx, id: str) -> _Reply | None:
        """Cards of Stripe's decline table are refused at attach; the rest pass through."""
        spec = MAGIC_PAYMENT_METHODS.get(id)
        card: StripeTestCard | None = spec if isinstance(spec, StripeTestCard) else None
        method: Json | None = None
        if spec is None:
            reply = await self.emulator.backend_call(
                self.internal_ctx(ctx), "GET", f"/v1/payment_methods/{id}"
            )
            method = reply.json() if reply.status == 200 else None
            card = card_of(method) if method is not None else None
        if card is None or card.attach_decline is None:
            return None
        raise self.card_error(
            card.attach_decline, payment_method=self.emulator.decorate(method) if method else None
        )

    async def confirm_setup_intent(self, ctx: _Ctx, id: str) -> _Reply | None:
        """A declining card leaves the SetupIntent ``requires_payment_method`` with
        ``last_setup_error`` (localstripe would cancel it) and attaches nothing."""
        params = ctx.params
        card: StripeTestCard | None = None
        method: Json | None = None
        data = params.get("payment_method_data")
        chosen = params.get("payment_method")
        if isinstance(data, dict) and isinstance(data.get("card"), dict):
            card = card_for_number(data["card"].get("number"))
        elif isinstance(chosen, str) and chosen in MAGIC_PAYMENT_METHODS:
            spec = MAGIC_PAYMENT_METHODS[chosen]
            card = spec if isinstance(spec, StripeTestCard) else None
        elif isinstance(chosen, str):
            reply = await self.emulator.backend_call(
                self.internal_ctx(ctx), "GET", f"/v1/payment_methods/{chosen}"
            )
            method = reply.json() if reply.status == 200 else None
            card = card_of(method) if method is not None else None
        reply = await self.emulator.backend_call(
            self.internal_ctx(ctx), "GET", f"/v1/setup_intents/{id}"
        )
        intent = reply.json()
        if reply.status != 200 or intent is None:
            return None  # localstripe's answer (404) is the right one
        secret = params.get("client_secret")
        if secret is not None and secret != intent.get("client_secret"):
            return None  # localstripe refuses a wrong client secret
        if card is None or card.attach_decline is None:
            self.setup_errors.pop(id, None)
            if isinstance(chosen, str) and chosen in MAGIC_PAYMENT_METHODS:
                # The test id becomes a PaymentMethod of the SetupIntent's customer (not
                # one shared by every confirm without a customer parameter).
                real = await self.emulator.materialise(ctx, chosen, intent.get("customer"))
                forwarded = {**params, "payment_method": real}
                return await self.emulator.passthrough(
                    replace(
                        ctx,
                        params=forwarded,
                        raw_body=json.dumps(forwarded).encode(),
                        content_type="application/json",
                    )
                )
            return None
        shown = self.emulator.decorate(method) if method else None
        error = card.attach_decline.error(payment_method=shown)
        self.setup_errors[id] = error
        intent = {
            **intent,
            "status": "requires_payment_method",
            "payment_method": None,
            "next_action": None,
            "last_setup_error": error,
        }
        raise self.card_error(card.attach_decline, setup_intent=intent, payment_method=shown)

    async def retrieve_setup_intent(self, ctx: _Ctx, id: str) -> _Reply | None:
        error = self.setup_errors.get(id)
        if error is None:
            return None
        reply: _Reply = await self.emulator.passthrough(ctx)
        intent = reply.json()
        if reply.status != 200 or intent is None:
            return reply
        return self.fake._json_reply(200, {**intent, "last_setup_error": error})


def _created_matches(condition: Any, obj: Json) -> bool:
    """Stripe's ``created`` list filter: an exact time or ``gt``/``gte``/``lt``/``lte``."""
    if condition is None:
        return True
    created = int(obj.get("created") or 0)
    if not isinstance(condition, dict):
        return str(created) == str(condition)
    checks = {
        "gt": lambda bound: created > bound,
        "gte": lambda bound: created >= bound,
        "lt": lambda bound: created < bound,
        "lte": lambda bound: created <= bound,
    }
    return all(checks[op](int(value)) for op, value in condition.items() if op in checks)
