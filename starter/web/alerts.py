"""The customer's alerts page: warning thresholds and extra recipients of every notice.

Like Stripe's and Twilio's usage alerts: the customer picks up to five thresholds in
percent of the extra-minutes limit (90 % is the default; the 100 % stop always notifies
and is not listed) and up to five extra addresses (a billing address, a colleague) that
get every notice besides the account's own address.

* Thresholds go to the workflow (``AccountService.change_alerts``, an Update): it decides
  when each is crossed, once per period and limit; lowering or raising them re-arms only
  thresholds not yet crossed. Recipients are the database's alone
  (``AccountService.set_alert_recipients``): the notification activity reads them at send
  time, so a change counts for the next email.
* Bad input stays in the form with the reason at its field ("101", "abc", an address that
  is not one), nothing is saved; a good form is saved and answered with a redirect.
* The form carries a change id (a hidden uuid made when the page was shown): posting it
  twice changes the thresholds once (the workflow dedupes by change id).
* The account-less ``/app/alerts`` is the stable address emails and other pages link to.
"""

from __future__ import annotations

import re
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from billing.account_state import MAX_ALERT_THRESHOLDS, WARNING_PERCENT
from starter.errors import ApiError
from starter.services import MAX_ALERT_RECIPIENTS, clean_recipients
from starter.web.customer import Customer, own_account
from starter.web.forms import FieldErrors
from starter.web.i18n import Translator
from starter.web.pages import PageContext, check_csrf, flash, render, service_of

router = APIRouter(include_in_schema=False)

THRESHOLDS_FIELD = "alerts-thresholds"
RECIPIENTS_FIELD = "alerts-recipients"
CHANGE_ID = re.compile(r"[0-9a-f]{32}")
SEPARATORS = re.compile(r"[\s,;]+")


def alerts_path(account_id: str) -> str:
    return f"/app/a/{account_id}/assistant/alerts"


def parse_thresholds(text: str, errors: FieldErrors, t: Translator) -> list[int] | None:
    """ "50, 75 90 %" → [50, 75, 90]; None with the field's error when it is not that."""
    parts = [p for p in SEPARATORS.split(text.replace("%", " ")) if p]
    values: list[int] = []
    for part in parts:
        if not part.isdigit():
            errors.add(THRESHOLDS_FIELD, t("alerts.error_not_number", value=part[:20]))
            return None
        value = int(part)
        if value == 100:
            errors.add(THRESHOLDS_FIELD, t("alerts.error_hundred"))
            return None
        if not 1 <= value <= 99:
            errors.add(THRESHOLDS_FIELD, t("alerts.error_range", value=part[:20]))
            return None
        values.append(value)
    if len(values) != len(set(values)):
        errors.add(THRESHOLDS_FIELD, t("alerts.error_twice"))
        return None
    if len(values) > MAX_ALERT_THRESHOLDS:
        errors.add(THRESHOLDS_FIELD, t("alerts.error_too_many", count=MAX_ALERT_THRESHOLDS))
        return None
    return sorted(values)


def parse_recipients(text: str, own: str, errors: FieldErrors, t: Translator) -> list[str] | None:
    """Addresses separated by commas, spaces or lines; the account's own is left out."""
    wanted: list[str] = []
    for given in (p for p in SEPARATORS.split(text) if p):
        try:
            [address] = clean_recipients([given])
        except ApiError:
            errors.add(RECIPIENTS_FIELD, t("alerts.error_address", value=given[:80]))
            return None
        if address != own.lower() and address not in wanted:
            wanted.append(address)
    if len(wanted) > MAX_ALERT_RECIPIENTS:
        errors.add(
            RECIPIENTS_FIELD, t("alerts.error_too_many_recipients", count=MAX_ALERT_RECIPIENTS)
        )
        return None
    return wanted


async def _page(
    ctx: PageContext,
    account_id: str,
    *,
    thresholds: str | None = None,
    recipients: str | None = None,
    errors: FieldErrors | None = None,
    change_id: str | None = None,
) -> Response:
    service = service_of(ctx.request)
    current_recipients = await service.alert_recipients(account_id)
    try:
        snapshot = await service.snapshot(account_id)
        current = list(getattr(snapshot, "alert_percents", [WARNING_PERCENT]))
    except ApiError:
        snapshot, current = None, None
    assert ctx.account is not None
    return render(
        ctx,
        "app/alerts.html",
        status_code=422 if errors else 200,
        nav="alerts",
        own_email=ctx.account.profile.email,
        current=current,
        extra_enabled=bool(snapshot and snapshot.enabled),
        thresholds=thresholds
        if thresholds is not None
        else ", ".join(str(p) for p in (current or [])),
        recipients=recipients if recipients is not None else "\n".join(current_recipients),
        errors=errors,
        change_id=change_id or uuid.uuid4().hex,
        max_thresholds=MAX_ALERT_THRESHOLDS,
        max_recipients=MAX_ALERT_RECIPIENTS,
        extra_minutes_url=f"/app/a/{account_id}/assistant/extra-minutes",
        notices_url=f"/app/a/{account_id}/notices",
    )


@router.get("/app/a/{account_id}/assistant/alerts")
async def alerts_page(account_id: str, ctx: Customer) -> Response:
    return await _page(ctx, account_id)


@router.get("/app/alerts")
async def alerts_link(request: Request) -> Response:
    """A stable address for emails and other pages: the signed-in customer's alerts."""
    return RedirectResponse(alerts_path(await own_account(request)), status_code=303)


@router.get("/app/invoices")
async def invoices_link(request: Request) -> Response:
    """The invoice emails' button: the signed-in customer's invoices."""
    return RedirectResponse(f"/app/a/{await own_account(request)}/invoices", status_code=303)


@router.get("/app/notices")
async def notices_link(request: Request) -> Response:
    return RedirectResponse(f"/app/a/{await own_account(request)}/notices", status_code=303)


@router.post("/app/a/{account_id}/assistant/alerts")
async def save_alerts(account_id: str, ctx: Customer) -> Response:
    request = ctx.request
    await check_csrf(request)
    form = await request.form()
    thresholds_text = str(form.get("thresholds", ""))[:200]
    recipients_text = str(form.get("recipients", ""))[:2000]
    given_id = str(form.get("change_id", "")).strip().lower()
    change_id = given_id if CHANGE_ID.fullmatch(given_id) else uuid.uuid4().hex
    assert ctx.account is not None and ctx.user is not None
    errors = FieldErrors()
    percents = parse_thresholds(thresholds_text, errors, ctx.t)
    recipients = parse_recipients(recipients_text, ctx.account.profile.email, errors, ctx.t)
    if errors or percents is None or recipients is None:
        return await _page(
            ctx,
            account_id,
            thresholds=thresholds_text,
            recipients=recipients_text,
            errors=errors,
            change_id=change_id,
        )
    service = service_of(request)
    try:
        # Recipients first, as the API does: checked and stored by the database alone,
        # so a refused address leaves the thresholds unchanged too.
        await service.set_alert_recipients(account_id, recipients)
        await service.change_alerts(
            account_id, percents, actor=ctx.user.actor, change_id=f"alerts-{change_id}"
        )
    except ApiError as err:
        field = RECIPIENTS_FIELD if err.code == "invalid_recipients" else THRESHOLDS_FIELD
        errors.add(field, ctx.t("alerts.error_busy") if err.status >= 500 else err.detail)
        return await _page(
            ctx,
            account_id,
            thresholds=thresholds_text,
            recipients=recipients_text,
            errors=errors,
            change_id=change_id,
        )
    flash(request, "alerts.flash_saved")
    return RedirectResponse(alerts_path(account_id), status_code=303)
