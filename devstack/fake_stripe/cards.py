"""Stripe's test payment methods and what each one does (https://docs.stripe.com/testing,
"Declined payments" and "SEPA Direct Debit"): the tables behind the fake's test ids.

``MAGIC_PAYMENT_METHODS`` maps every test PaymentMethod id the fake accepts to its card
number or IBAN; anything else (e.g. the old ``pm_sepa_debit``) is a 404
``resource_missing``. The cards of the decline table cannot be attached to a customer;
``pm_card_chargeCustomerFail`` attaches and fails every charge;
``pm_card_authenticationRequired`` fails every off-session charge. SEPA test IBANs go
``processing`` and settle later, succeeding or failing with ``generic_decline`` /
``insufficient_funds``. Outcomes follow the card number or IBAN, not the id: a
PaymentMethod is recognised by localstripe's ``fingerprint`` (the first 16 hex digits of
the SHA-1 of the number or IBAN), so a test card or IBAN typed into the browser behaves
exactly like its ``pm_...`` id. Cards and IBANs outside the tables succeed, as Stripe's
other test numbers do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from devstack.fake_stripe.wire import Json, StripeApiError

# Where an error's doc_url points, in the form Stripe's API sends (as ``shapes.py``).
_ERROR_DOCS = "https://stripe.com/docs/error-codes/"

# Test cards are created with this expiry (Stripe: any future date, any CVC).
CARD_EXPIRY = {"exp_month": "12", "exp_year": "2034", "cvc": "123"}


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
# PaymentMethods built from the card or IBAN (``payment_methods.PaymentMethods.materialise``).
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


def brand_for(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if re.match(r"5[1-5]|2[2-7]", number):
        return "mastercard"
    if re.match(r"3[47]", number):
        return "amex"
    if number.startswith("6"):
        return "discover"
    return "unknown"


def card_error(decline: Decline, **objects: Json | str | None) -> StripeApiError:
    """The 402 Stripe answers a decline with."""
    fields = decline.error(**objects)
    for name in ("type", "code", "message"):
        fields.pop(name)
    return StripeApiError(402, decline.message, type_="card_error", code=decline.code, **fields)
