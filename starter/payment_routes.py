"""HTTP routes for payment setup, payment methods, invoices and Stripe's webhooks."""

from __future__ import annotations

from typing import Annotated, cast
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from starter import schemas
from starter.auth import admin_only
from starter.payments import CardDeclined, PaymentService

router = APIRouter()
ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": schemas.ErrorOut} for status in (400, 401, 402, 403, 404, 409, 422, 502, 503)
}


def payments_of(request: Request) -> PaymentService:
    return request.app.state.payments


Payments = Annotated[PaymentService, Depends(payments_of)]


@router.post(
    "/v1/accounts/{account_id}/payment-setup",
    response_model=schemas.PaymentSetupOut,
    dependencies=[admin_only],
    responses=ERRORS,
)
async def payment_setup(account_id: str, payments: Payments) -> schemas.PaymentSetupOut:
    """A SetupIntent (card or SEPA direct debit, off-session) for Stripe Elements."""
    return schemas.PaymentSetupOut(**await payments.setup_intent(account_id))


@router.post(
    "/v1/accounts/{account_id}/payment-method",
    response_model=schemas.PaymentMethodOut,
    dependencies=[admin_only],
    responses={**ERRORS, 402: {"model": schemas.CardDeclinedOut}},
)
async def attach_payment_method(
    account_id: str, body: schemas.PaymentMethodIn, payments: Payments
) -> schemas.PaymentMethodOut | JSONResponse:
    """Make a payment method (``pm_…``, e.g. from a confirmed SetupIntent) the account's
    default. A card Stripe declines is a 402 ``card_declined`` with ``decline_code``, and
    nothing is saved."""
    try:
        info = await payments.attach(account_id, body.payment_method_id, actor="admin")
    except CardDeclined as declined:
        body_out = schemas.CardDeclinedOut(
            error=declined.code, detail=declined.detail, decline_code=declined.decline_code
        )
        return JSONResponse(body_out.model_dump(), status_code=declined.status)
    return schemas.PaymentMethodOut(
        id=info.id, type=info.type, brand=info.brand, last4=info.last4, bank_code=info.bank_code
    )


@router.delete(
    "/v1/accounts/{account_id}/payment-method",
    status_code=204,
    dependencies=[admin_only],
    responses=ERRORS,
)
async def remove_payment_method(account_id: str, payments: Payments) -> None:
    await payments.remove(account_id, actor="admin")


@router.get(
    "/v1/accounts/{account_id}/invoices",
    response_model=list[schemas.InvoiceOut],
    dependencies=[admin_only],
    responses=ERRORS,
)
async def invoices(account_id: str, payments: Payments) -> list[schemas.InvoiceOut]:
    start_input = await payments.accounts.load(account_id)
    zone = ZoneInfo(start_input.profile.timezone)
    return [
        schemas.InvoiceOut(
            period_start=row.period_start.astimezone(zone).isoformat(),
            period_end=row.period_end.astimezone(zone).isoformat(),
            extra_seconds=row.extra_seconds,
            amount_cents=row.amount_cents,
            currency=row.currency,
            # The column holds Stripe's status as a string; the model validates it.
            status=cast("schemas.InvoiceStatus", row.status),
            stripe_invoice_id=row.stripe_invoice_id,
            hosted_invoice_url=row.hosted_invoice_url,
        )
        for row in await payments.invoices(account_id)
    ]


@router.post("/v1/stripe/webhook", responses=ERRORS)
async def stripe_webhook(request: Request, payments: Payments) -> dict[str, object]:
    """Stripe's event delivery: signature checked, each event handled once."""
    return await payments.webhook(await request.body(), request.headers.get("stripe-signature"))
