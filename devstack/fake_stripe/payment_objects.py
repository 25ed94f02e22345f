"""The PaymentIntents and Charges the proxy owns (those of emulated invoices), in
Stripe's shape for the pinned API version.

localstripe cannot confirm a PaymentIntent twice, so an invoice's intent and the charge of
every attempt live in the proxy (``payments.py`` moves them) and are rendered here.
"""

from __future__ import annotations

from dataclasses import dataclass

from devstack.fake_stripe.cards import Decline
from devstack.fake_stripe.wire import Json


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
