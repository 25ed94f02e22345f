"""Payment setup, payment methods, invoices and Stripe's webhooks (the API side).

Stripe is reached only through :class:`overtime.stripe_gateway.StripeGateway`; the
account workflow learns about payment methods through an Update, and an invoice's
workflow about payment outcomes through a signal.

Webhooks first, reconcile as the safety net: an invoice's workflow re-reads its invoice
from Stripe when a webhook says something happened to it (``invoice.*`` events, and
``invoice_payment.paid``, whose object names its ``invoice``), and on its own every
reconcile interval in case an event was lost. ``payment_intent.*`` events are
acknowledged but not forwarded: since API version 2025-03-31 a PaymentIntent has no
``invoice`` field (the link is the invoice's ``payments`` list), and every outcome they
report also arrives as an invoice event (``invoice.paid``, ``invoice.payment_failed``,
``invoice.payment_action_required``) for the same invoice.

A card that Stripe declines already when it is saved is answered with 402
``card_declined`` (``detail`` a customer's sentence, ``decline_code`` Stripe's reason)
and nothing is stored: no payment method on the account, no history row, no news to the
workflow.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar, TypeVarTuple

import stripe
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from temporalio.api.common.v1 import Payloads, WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from billing.rules import period_key
from overtime.db import session_scope
from overtime.models import Account, Invoice, StripeEvent
from overtime.observability import WEBHOOK_FAILURES, count
from overtime.stripe_gateway import PaymentMethodInfo, StripeGateway, is_retryable
from starter.declines import decline_message, stripe_decline_code
from starter.dispatcher import DispatchTimeout, WorkflowRejected
from starter.errors import ApiError, unavailable
from starter.services import AccountService
from workflows.invoice import InvoiceWorkflow
from workflows.types import PaymentEvent, PaymentMethodChange, invoice_workflow_id

log = logging.getLogger(__name__)

_Result = TypeVar("_Result")
_Args = TypeVarTuple("_Args")

# Stripe event types that change what we know about an invoice's payment (the object is
# the invoice), and the status they suggest. The workflow takes Stripe's word from a
# fresh read, never from the event alone: events arrive late, twice and out of order.
INVOICE_EVENTS = {
    "invoice.paid": "paid",
    "invoice.payment_succeeded": "paid",
    "invoice.payment_failed": "payment_failed",
    "invoice.payment_action_required": "payment_failed",  # off-session: nobody to confirm
    "invoice.voided": "void",
    "invoice.marked_uncollectible": "void",
    "invoice.finalized": "open",
}
# Events whose object is an invoice_payment: its ``invoice`` field names the invoice.
INVOICE_PAYMENT_EVENTS = {"invoice_payment.paid": "paid"}
# Unpaid invoices charged again at once when a new payment method arrives. Not
# "processing" (a SEPA debit being collected): unpaid too, but never charged again while
# it lasts; its outcome is Stripe's to report.
RETRY_ON_NEW_METHOD = ("open", "payment_failed", "draft")


@dataclass
class _InFlight:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


@dataclass
class PaymentService:
    accounts: AccountService
    gateway: StripeGateway
    client: Client
    webhook_secret: str
    # Deliveries of one Stripe event in flight in this process wait for each other.
    _in_flight: dict[str, _InFlight] = field(default_factory=dict, init=False, repr=False)

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
        await self._tell_workflow(account_id, on_file=True, actor=actor, label=method_label(info))
        # What a new payment method is for after a declined charge: Stripe is asked again
        # now (the invoice workflow's payment_method_updated signal), not at the next
        # scheduled attempt.
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

    async def _tell_workflow(
        self, account_id: str, *, on_file: bool, actor: str, label: str | None = None
    ) -> None:
        start_input = await self.accounts.load(account_id)
        try:
            # One change id per API call: applied once however often it is retried.
            # With a label the workflow writes a settings-history row and queues the
            # confirmation email (payment_method_changed).
            change = PaymentMethodChange(
                on_file=on_file, actor=actor, change_id=str(uuid.uuid4()), method_label=label
            )
            await self.accounts.dispatcher.payment_method(start_input, change)
        except WorkflowRejected as err:
            # The validator refused it (an actor it does not know): an answer, not a 500.
            raise ApiError(422, err.code, err.detail) from err
        except DispatchTimeout as err:
            raise unavailable(str(err), err.retry_after) from err

    async def _retry_unpaid_invoices(self, account_id: str) -> None:
        """A new payment method: unpaid invoices are charged again at once (not one whose
        SEPA debit is still processing: that would be a second debit)."""

        def unpaid() -> list[Invoice]:
            with session_scope(self._db) as session:
                return list(
                    session.exec(
                        select(Invoice).where(
                            Invoice.account_id == account_id,
                            col(Invoice.status).in_(RETRY_ON_NEW_METHOD),
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
                        .order_by(col(Invoice.period_start))
                    )
                )

        return await run_in_threadpool(fetch)

    # --- Stripe's webhooks --------------------------------------------------------------

    async def webhook(self, payload: bytes, signature: str | None) -> dict[str, object]:
        """Verify, dedupe by event id, and forward payment news to the invoice workflow.

        An event is recorded as handled (``stripe_event``) only once its signal reached
        Temporal, or once there is nothing to tell (no such invoice, its workflow has
        finished). When Temporal cannot be reached the answer is 503 and nothing is
        recorded, so Stripe delivers the event again later.

        At most one signal per event id: deliveries of one event in this process wait
        for each other, and the signal carries a request id derived from the event id,
        which the Temporal server deduplicates per workflow run, so concurrent
        deliveries to two API processes (or a retry after a lost answer) signal once.
        """
        if not signature:
            raise ApiError(400, "invalid_signature", "missing Stripe-Signature header")
        settings = self.accounts.settings
        tolerance = settings.stripe_webhook_tolerance_seconds
        try:
            # Stripe's library refuses timestamps older than the tolerance only.
            event = stripe.Webhook.construct_event(
                payload, signature, self.webhook_secret, tolerance=tolerance
            )
            _refuse_future_timestamp(signature, tolerance)
        except (ValueError, stripe.SignatureVerificationError) as err:
            if self.accounts.meter is not None:
                count(self.accounts.meter, WEBHOOK_FAILURES, direction="stripe")
            log.warning("Stripe webhook refused", extra={"reason": str(err)})
            raise ApiError(400, "invalid_signature", f"webhook refused: {err}") from err
        event_id, event_type = str(event["id"]), str(event["type"])
        obj = event["data"]["object"]
        if event_type in INVOICE_EVENTS:
            stripe_invoice_id, status = str(obj["id"]), INVOICE_EVENTS[event_type]
        elif event_type in INVOICE_PAYMENT_EVENTS and _id_of(_field(obj, "invoice")):
            stripe_invoice_id = str(_id_of(_field(obj, "invoice")))
            status = INVOICE_PAYMENT_EVENTS[event_type]
        else:
            # payment_intent.*, customer.*, ...: acknowledged (Stripe stops retrying);
            # what matters of them reaches us as an invoice event (see the module doc).
            return {"received": True, "handled": False}

        pending = self._in_flight.setdefault(event_id, _InFlight())
        pending.users += 1
        try:
            async with pending.lock:
                return await self._deliver(event_id, event_type, stripe_invoice_id, status)
        finally:
            pending.users -= 1
            if pending.users == 0:
                del self._in_flight[event_id]

    async def _deliver(
        self, event_id: str, event_type: str, stripe_invoice_id: str, status: str
    ) -> dict[str, object]:
        def look_up() -> tuple[bool, Invoice | None]:
            with session_scope(self._db) as session:
                if session.get(StripeEvent, event_id) is not None:
                    return True, None
                invoice = session.exec(
                    select(Invoice).where(Invoice.stripe_invoice_id == stripe_invoice_id)
                ).first()
                return False, invoice

        def record() -> bool:
            """True when this delivery recorded the event, False when another had."""
            with session_scope(self._db) as session:
                session.add(
                    StripeEvent(event_id=event_id, type=event_type, received_at=datetime.now(UTC))
                )
                try:
                    session.commit()
                except IntegrityError:
                    return False
                return True

        seen, invoice = await run_in_threadpool(look_up)
        if seen:
            return {"received": True, "duplicate": True}
        if invoice is None:
            # Not one of our invoices (or not yet written): nothing to tell anyone; the
            # invoice workflow reconciles with Stripe on its own schedule.
            first = await run_in_threadpool(record)
            return {"received": True, "handled": False} if first else _DUPLICATE
        workflow_id = invoice_workflow_id(invoice.account_id, period_key(invoice.period_start))
        try:
            await self._signal_invoice(workflow_id, PaymentEvent(event_id=event_id, status=status))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise self._undelivered(event_id, workflow_id, err) from err
            # The invoice's workflow has finished: it already knows the final state.
            first = await run_in_threadpool(record)
            return {"received": True, "handled": False} if first else _DUPLICATE
        except (TimeoutError, RuntimeError) as err:
            # No answer in time, or no connection at all ("Failed client connect").
            raise self._undelivered(event_id, workflow_id, err) from err
        try:
            first = await run_in_threadpool(record)
        except SQLAlchemyError as err:
            # Signalled but not recorded: Stripe's retry signals again with the same
            # request id, which Temporal drops, and then records it.
            log.warning("Stripe event %s signalled but not recorded", event_id, exc_info=True)
            raise unavailable("the event could not be recorded; retry", 5) from err
        return {"received": True, "handled": True} if first else _DUPLICATE

    async def _signal_invoice(self, workflow_id: str, event: PaymentEvent) -> None:
        """Signal ``stripe_event`` with a request id Temporal deduplicates.

        ``WorkflowHandle.signal`` gives every call a random request id; the same call
        through the workflow service with ``stripe-event:<id>`` makes a second delivery
        of one event a no-op on the server. The input goes through the client's data
        converter (encryption included), as the SDK's own signal does; Overtime's codec
        needs no per-workflow serialisation context.
        """
        timeout = self.accounts.settings.stripe_webhook_signal_timeout_seconds
        request = SignalWorkflowExecutionRequest(
            namespace=self.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            signal_name=STRIPE_EVENT_SIGNAL,
            input=Payloads(payloads=await self.client.data_converter.encode([event])),
            identity=self.client.identity,
            request_id=f"stripe-event:{event.event_id}",
        )
        await asyncio.wait_for(
            self.client.workflow_service.signal_workflow_execution(
                request, retry=True, timeout=timedelta(seconds=timeout)
            ),
            timeout,
        )

    def _undelivered(self, event_id: str, workflow_id: str, err: BaseException) -> ApiError:
        if self.accounts.meter is not None:
            count(self.accounts.meter, WEBHOOK_FAILURES, direction="stripe_signal")
        log.warning(
            "Stripe event not delivered to its invoice workflow; answering 503 so Stripe retries",
            extra={"event_id": event_id, "workflow_id": workflow_id, "error": str(err)},
        )
        return unavailable(
            "the invoice workflow could not be reached; the event was not recorded, retry",
            DispatchTimeout.retry_after,
        )

    # --- plumbing -------------------------------------------------------------------------

    async def _stripe(self, call: Callable[[*_Args], _Result], *args: *_Args) -> _Result:
        """Run a gateway call off the event loop; Stripe's refusals become 4xx/502."""
        try:
            return await run_in_threadpool(call, *args)
        except stripe.CardError as err:
            raise CardDeclined(stripe_decline_code(err)) from err
        except stripe.InvalidRequestError as err:
            raise ApiError(422, "invalid_payment_method", err.user_message or str(err)) from err
        except stripe.StripeError as err:
            if is_retryable(err):
                raise ApiError(503, "stripe_unavailable", "Stripe is unavailable, retry") from err
            raise ApiError(502, "stripe_error", str(err)) from err


class CardDeclined(ApiError):
    """402 ``card_declined``: Stripe refused the card (at attach, before anything was
    stored). ``decline_code`` is Stripe's reason; ``detail`` words it for a customer."""

    def __init__(self, decline_code: str) -> None:
        # The web app's words, in English for the API. Imported here: the web package
        # imports its pages, and they import this module.
        from starter.web.i18n import Translator

        super().__init__(402, "card_declined", decline_message(Translator("en"), decline_code))
        self.decline_code = decline_code


_DUPLICATE: dict[str, object] = {"received": True, "duplicate": True}
# InvoiceWorkflow.stripe_event's signal name (the method's name, see workflows/invoice.py).
STRIPE_EVENT_SIGNAL = "stripe_event"


def _refuse_future_timestamp(header: str, tolerance: int) -> None:
    """Refuse a signature dated more than ``tolerance`` seconds ahead of our clock.

    Stripe's library checks only the other direction; a far-future timestamp would make
    a captured request replayable for as long as it lies ahead. A header with two
    timestamps is refused as well: it is ambiguous which one was signed.
    """
    stamps = [p.strip()[2:] for p in header.split(",") if p.strip().startswith("t=")]
    if len(stamps) != 1:
        raise ValueError("the signature header must carry exactly one timestamp")
    try:
        timestamp = int(stamps[0])
    except ValueError as err:
        raise ValueError("the signature timestamp is not a number") from err
    if timestamp - time.time() > tolerance:
        raise ValueError("the signature timestamp is in the future, outside the tolerance")


def method_label(info: PaymentMethodInfo) -> str:
    """How the history and the emails name a payment method: "Visa •••• 4242",
    "SEPA DE •••• 3000". Stripe tells an IBAN's country and last four digits, never its
    check digits; ``PaymentMethodInfo`` carries the country once the gateway reads it."""
    last4 = info.last4 or "????"
    if info.type == "sepa_debit":
        country = getattr(info, "country", None)
        return f"SEPA {country} •••• {last4}" if country else f"SEPA •••• {last4}"
    brand = (info.brand or "card").replace("_", " ").title()
    return f"{brand} •••• {last4}"


def _id_of(value: object) -> object:
    """An expandable field's id: the string itself, or the expanded object's ``id``."""
    return _field(value, "id") if value is not None and not isinstance(value, str) else value


def _field(obj: object, name: str) -> object:
    try:
        # A StripeObject or a dict; anything else raises TypeError, which is caught.
        return obj[name]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
