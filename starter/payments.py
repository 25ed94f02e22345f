"""Payment setup, payment methods, invoices and Stripe's webhooks (the API side).

Stripe is reached only through :class:`overtime.stripe_gateway.StripeGateway`; the
account workflow learns about payment methods through an Update, and an invoice's
workflow about payment outcomes through a signal.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import stripe
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client
from temporalio.service import RPCError

from billing.rules import period_key
from overtime.db import session_scope
from overtime.models import Account, Invoice, StripeEvent
from overtime.observability import WEBHOOK_FAILURES, count
from overtime.stripe_gateway import PaymentMethodInfo, StripeGateway, is_retryable
from starter.dispatcher import DispatchTimeout
from starter.errors import ApiError, unavailable
from starter.services import AccountService
from workflows.invoice import InvoiceWorkflow
from workflows.types import PaymentEvent, PaymentMethodChange, invoice_workflow_id

log = logging.getLogger(__name__)

# Stripe event types that change what we know about an invoice's payment.
INVOICE_EVENTS = {
    "invoice.paid": "paid",
    "invoice.payment_succeeded": "paid",
    "invoice.payment_failed": "payment_failed",
    "invoice.voided": "void",
    "invoice.marked_uncollectible": "void",
    "invoice.finalized": "open",
}
PAYMENT_INTENT_EVENTS = {
    "payment_intent.succeeded": "paid",
    "payment_intent.payment_failed": "payment_failed",
    "payment_intent.processing": "open",
    "payment_intent.canceled": "payment_failed",
}
UNPAID = ("open", "payment_failed", "draft")


@dataclass
class PaymentService:
    accounts: AccountService
    gateway: StripeGateway
    client: Client
    webhook_secret: str

    @property
    def _db(self) -> str:
        return self.accounts.settings.resolved_database_url()

    def _account(self, account_id: str) -> Account:
        with session_scope(self._db) as session:
            account = session.get(Account, account_id)
        if account is None:
            raise ApiError(404, "unknown_account", f"no account {account_id!r}")
        return account

    async def _customer(self, account_id: str) -> str:
        account = await run_in_threadpool(self._account, account_id)
        if account.stripe_customer_id:
            return account.stripe_customer_id
        customer_id = await self._stripe(self.gateway.ensure_customer, account_id, account.email)

        def store() -> None:
            with session_scope(self._db) as session:
                row = session.get(Account, account_id)
                assert row is not None
                row.stripe_customer_id = customer_id
                session.add(row)
                session.commit()

        await run_in_threadpool(store)
        return customer_id

    async def setup_intent(self, account_id: str) -> dict[str, str]:
        customer_id = await self._customer(account_id)
        secret = await self._stripe(self.gateway.create_setup_intent, customer_id, account_id)
        return {"client_secret": secret, "publishable_key": self.gateway.publishable_key}

    async def attach(
        self, account_id: str, payment_method_id: str, actor: str
    ) -> PaymentMethodInfo:
        customer_id = await self._customer(account_id)
        info: PaymentMethodInfo = await self._stripe(
            self.gateway.attach_default_payment_method, customer_id, payment_method_id
        )
        await run_in_threadpool(self._mirror, account_id, info)
        await self._tell_workflow(account_id, on_file=True, actor=actor)
        await self._retry_unpaid_invoices(account_id)
        return info

    async def remove(self, account_id: str, actor: str) -> None:
        account = await run_in_threadpool(self._account, account_id)
        if not account.payment_method_id:
            raise ApiError(404, "no_payment_method", "no payment method on file")
        await self._stripe(self.gateway.detach_payment_method, account.payment_method_id)
        await run_in_threadpool(self._mirror, account_id, None)
        await self._tell_workflow(account_id, on_file=False, actor=actor)

    def _mirror(self, account_id: str, info: PaymentMethodInfo | None) -> None:
        with session_scope(self._db) as session:
            row = session.get(Account, account_id)
            assert row is not None
            row.payment_method_id = info.id if info else None
            row.payment_method_type = info.type if info else None
            row.payment_method_brand = info.brand if info else None
            row.payment_method_last4 = info.last4 if info else None
            row.payment_method_bank = info.bank_code if info else None
            session.add(row)
            session.commit()

    async def _tell_workflow(self, account_id: str, *, on_file: bool, actor: str) -> None:
        start_input = await self.accounts.load(account_id)
        try:
            # One change id per API call: applied once however often it is retried.
            change = PaymentMethodChange(on_file=on_file, actor=actor, change_id=str(uuid.uuid4()))
            await self.accounts.dispatcher.payment_method(start_input, change)
        except DispatchTimeout as err:
            raise unavailable(str(err), err.retry_after) from err

    async def _retry_unpaid_invoices(self, account_id: str) -> None:
        """A new payment method: unpaid invoices are charged again at once."""

        def unpaid() -> list[Invoice]:
            with session_scope(self._db) as session:
                return list(
                    session.exec(
                        select(Invoice).where(
                            Invoice.account_id == account_id,
                            Invoice.status.in_(UNPAID),  # type: ignore[attr-defined]
                        )
                    )
                )

        for invoice in await run_in_threadpool(unpaid):
            handle = self.client.get_workflow_handle(
                invoice_workflow_id(account_id, period_key(invoice.period_start))
            )
            try:
                await handle.signal(InvoiceWorkflow.payment_method_updated)
            except RPCError:
                log.info("invoice workflow for %s no longer running", invoice.stripe_invoice_id)

    # --- invoices ---------------------------------------------------------------------

    async def invoices(self, account_id: str) -> list[Invoice]:
        await run_in_threadpool(self._account, account_id)

        def fetch() -> list[Invoice]:
            with session_scope(self._db) as session:
                return list(
                    session.exec(
                        select(Invoice)
                        .where(Invoice.account_id == account_id)
                        .order_by(Invoice.period_start)  # type: ignore[arg-type]
                    )
                )

        return await run_in_threadpool(fetch)

    # --- Stripe's webhooks --------------------------------------------------------------

    async def webhook(self, payload: bytes, signature: str | None) -> dict[str, object]:
        """Verify, dedupe by event id, and forward payment news to the invoice workflow."""
        if not signature:
            raise ApiError(400, "invalid_signature", "missing Stripe-Signature header")
        try:
            event = stripe.Webhook.construct_event(payload, signature, self.webhook_secret)
        except (ValueError, stripe.SignatureVerificationError) as err:
            if self.accounts.meter is not None:
                count(self.accounts.meter, WEBHOOK_FAILURES, direction="stripe")
            log.warning("Stripe webhook refused", extra={"reason": str(err)})
            raise ApiError(400, "invalid_signature", f"webhook refused: {err}") from err
        event_type = str(event["type"])
        obj = event["data"]["object"]
        if event_type in INVOICE_EVENTS:
            stripe_invoice_id, status = str(obj["id"]), INVOICE_EVENTS[event_type]
        elif event_type in PAYMENT_INTENT_EVENTS and _field(obj, "invoice"):
            stripe_invoice_id, status = (
                str(_field(obj, "invoice")),
                PAYMENT_INTENT_EVENTS[event_type],
            )
        else:
            return {"received": True, "handled": False}

        def first_time() -> Invoice | bool | None:
            with session_scope(self._db) as session:
                session.add(
                    StripeEvent(
                        event_id=str(event["id"]), type=event_type, received_at=datetime.now(UTC)
                    )
                )
                try:
                    session.commit()
                except IntegrityError:
                    return False
                return session.exec(
                    select(Invoice).where(Invoice.stripe_invoice_id == stripe_invoice_id)
                ).first()

        invoice = await run_in_threadpool(first_time)
        if invoice is False:
            return {"received": True, "duplicate": True}
        if invoice is None or isinstance(invoice, bool):
            return {"received": True, "handled": False}
        handle = self.client.get_workflow_handle(
            invoice_workflow_id(invoice.account_id, period_key(invoice.period_start))
        )
        try:
            await handle.signal(
                InvoiceWorkflow.stripe_event,
                PaymentEvent(event_id=str(event["id"]), status=status),
            )
        except RPCError:
            # The invoice's workflow has finished: it already knows the final state.
            return {"received": True, "handled": False}
        return {"received": True, "handled": True}

    # --- plumbing -------------------------------------------------------------------------

    async def _stripe(self, call, *args):  # type: ignore[no-untyped-def]
        """Run a gateway call off the event loop; Stripe's refusals become 4xx/502."""
        try:
            return await run_in_threadpool(call, *args)
        except stripe.CardError as err:
            raise ApiError(402, "card_declined", err.user_message or str(err)) from err
        except stripe.InvalidRequestError as err:
            raise ApiError(422, "invalid_payment_method", err.user_message or str(err)) from err
        except stripe.StripeError as err:
            if is_retryable(err):
                raise ApiError(503, "stripe_unavailable", "Stripe is unavailable, retry") from err
            raise ApiError(502, "stripe_error", str(err)) from err


def _field(obj: object, name: str) -> object:
    try:
        return obj[name]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
