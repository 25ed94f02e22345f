"""The admin console: every account with live state from its workflow, and one account's
history, ledger, notices and invoices with the actions an operator needs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, cast
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from temporalio.service import RPCError

from billing.account_state import DISABLED_BY_CUSTOMER, DISABLED_NO_PAYMENT_METHOD
from billing.rules import (
    ExtraMinutesSettings,
    allowed_extra_seconds,
    cost_cents,
    limit_as_cents,
    period_key,
)
from overtime import formatting, mailer, notices
from overtime.db import session_scope
from overtime.models import Account, ClosedPeriod, Invoice, Notification, UsageEntry
from overtime.notices import NOT_RESENDABLE
from starter import customer_tokens
from starter.errors import ApiError
from starter.web import data, security, sessions
from starter.web.charts import day_chart
from starter.web.i18n import Translator, parse_euros, parse_minutes
from starter.web.pages import (
    LoginRequired,
    PageContext,
    PageError,
    check_csrf,
    current_user,
    db_of,
    flash,
    render,
    service_of,
    settings_of,
    web_settings_of,
)
from workflows.invoice import InvoiceWorkflow
from workflows.types import invoice_workflow_id, workflow_id_for

router = APIRouter(include_in_schema=False)
LIVE_CONCURRENCY = 10
LIVE_LIST_SECONDS = 5.0
STATUSES = ("all", "accepting", "stopped", "warning", "overdue", "extra_on", "extra_off")
SORTS = ("account", "plan", "used", "cost", "status")
REASON_MAX = 500


async def admin(request: Request) -> PageContext:
    user = await current_user(request)
    if user is None:
        raise LoginRequired(request.url.path)
    if not user.is_admin:
        raise PageError(403, "forbidden")
    return PageContext(request, user, Translator("en"))


Admin = Annotated[PageContext, Depends(admin)]


def temporal_ui(request: Request, account_id: str) -> str:
    settings = settings_of(request)
    base = web_settings_of(request).web_temporal_ui_url or (
        f"http://{settings.temporal_host}:{settings.temporal_ui_port}"
    )
    workflow = quote(workflow_id_for(account_id), safe="")
    return f"{base.rstrip('/')}/namespaces/{settings.temporal_namespace}/workflows/{workflow}"


# --- all accounts -------------------------------------------------------------------------


@dataclass
class Row:
    account: Account
    usage: data.Usage | None
    status: str
    invoice_status: str | None
    has_login: bool
    workflow_url: str


def _status(usage: data.Usage | None) -> str:
    if usage is None:
        return "unknown"
    if not usage.snapshot.accepting_calls:
        return usage.snapshot.stop_reason or "stopped"
    return "warning" if usage.warning else "accepting"


def _matches(row: Row, status: str) -> bool:
    usage = row.usage
    if status == "all":
        return True
    if usage is None:
        return False
    snapshot = usage.snapshot
    return {
        "accepting": snapshot.accepting_calls,
        "stopped": not snapshot.accepting_calls,
        "warning": usage.warning,
        "overdue": snapshot.payment_overdue,
        "extra_on": snapshot.enabled,
        "extra_off": not snapshot.enabled,
    }[status]


def _sort_key(sort: str) -> Callable[[Row], tuple[float | str, ...]]:
    def key(row: Row) -> tuple[float | str, ...]:
        usage = row.usage
        if sort == "plan":
            return (row.account.plan, row.account.account_id)
        if sort == "used":
            return (usage.extra_percent if usage else -1.0, row.account.account_id)
        if sort == "cost":
            return (usage.snapshot.extra_cost_cents if usage else -1, row.account.account_id)
        if sort == "status":
            return (row.status, row.account.account_id)
        return (row.account.account_id,)

    return key


async def _rows(request: Request) -> tuple[list[Row], dict[str, str]]:
    params = request.query_params
    query = params.get("q", "").strip()[:100]
    plan = params.get("plan", "")
    status = params.get("status", "all")
    status = status if status in STATUSES else "all"
    sort = params.get("sort", "account")
    sort = sort if sort in SORTS else "account"
    direction = "desc" if params.get("dir") == "desc" else "asc"
    db = db_of(request)
    service = service_of(request)
    accounts = await run_in_threadpool(data.accounts, db, query, plan)
    ids = [a.account_id for a in accounts]
    with_login = await run_in_threadpool(data.logins, db, ids)
    latest_invoice = await run_in_threadpool(_latest_invoice_status, db, ids)
    gate = asyncio.Semaphore(LIVE_CONCURRENCY)
    loop = asyncio.get_running_loop()
    # The list shows what answered within a few seconds; an account that did not is shown
    # without live figures rather than holding the whole page (and the admin) up.
    deadline = loop.time() + LIVE_LIST_SECONDS

    async def live(account: Account) -> data.Usage | None:
        async with gate:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                return await asyncio.wait_for(
                    data.live_usage(service, db, account.account_id), left
                )
            except (ApiError, TimeoutError):
                return None

    usages = await asyncio.gather(*(live(a) for a in accounts))
    rows = [
        Row(
            account=account,
            usage=usage,
            status=_status(usage),
            invoice_status=latest_invoice.get(account.account_id),
            has_login=account.account_id in with_login,
            workflow_url=temporal_ui(request, account.account_id),
        )
        for account, usage in zip(accounts, usages, strict=True)
    ]
    rows = [r for r in rows if _matches(r, status)]
    rows.sort(key=_sort_key(sort), reverse=direction == "desc")
    filters = {"q": query, "plan": plan, "status": status, "sort": sort, "dir": direction}
    return rows, filters


def _latest_invoice_status(db: str, account_ids: list[str]) -> dict[str, str]:
    with session_scope(db) as session:
        found: dict[str, tuple[datetime, str]] = {}
        for account_id, period_start, status in session.exec(
            select(Invoice.account_id, Invoice.period_start, Invoice.status).where(
                col(Invoice.account_id).in_(account_ids)
            )
        ):
            if account_id not in found or found[account_id][0] < period_start:
                found[account_id] = (period_start, status)
    return {k: v[1] for k, v in found.items()}


@router.get("/admin")
async def accounts(ctx: Admin) -> Response:
    rows, filters = await _rows(ctx.request)
    return render(
        ctx,
        "admin/accounts.html",
        rows=rows,
        filters=filters,
        query=urlencode(filters),
        plans=sorted(service_of(ctx.request).catalog),
        statuses=STATUSES,
        sorts=SORTS,
    )


@router.get("/admin/rows")
async def account_rows(ctx: Admin) -> Response:
    """The table body alone; the console polls it (htmx, every 3 s) with its filters."""
    rows, filters = await _rows(ctx.request)
    return render(ctx, "admin/_rows.html", rows=rows, filters=filters)


# --- one account ------------------------------------------------------------------------------


async def _account_or_404(request: Request, account_id: str) -> Account:
    row = await run_in_threadpool(data.account, db_of(request), account_id)
    if row is None:
        raise PageError(404, "notfound")
    return row


@router.get("/admin/accounts/{account_id}")
async def account(account_id: str, ctx: Admin, error: str | None = None) -> Response:
    request = ctx.request
    row = await _account_or_404(request, account_id)
    db = db_of(request)
    usage = await data.live_usage(service_of(request), db, account_id, with_days=True)
    ctx.account = await service_of(request).load(account_id)
    (
        history,
        ledger,
        notices,
        invoices,
        logins,
        failed_webhooks,
        web_sessions,
        admin_actions,
    ) = await asyncio.gather(
        run_in_threadpool(data.history, db, account_id),
        run_in_threadpool(data.ledger, db, account_id),
        run_in_threadpool(data.notifications, db, account_id),
        run_in_threadpool(data.invoices, db, account_id),
        run_in_threadpool(data.logins, db, [account_id]),
        run_in_threadpool(data.failed_webhooks, db, account_id),
        run_in_threadpool(sessions.count_account_sessions, db, account_id),
        run_in_threadpool(data.admin_actions, db, account_id),
    )
    # gather() is typed for up to six awaitables; past that every result is an ``object``.
    notices = cast("list[Notification]", notices)
    unit, value = "eur", ""
    if usage is not None and usage.snapshot.limit_minutes is not None:
        unit, value = "minutes", str(usage.snapshot.limit_minutes)
    elif usage is not None and usage.snapshot.limit_cents is not None:
        value = ctx.t.euros_input(usage.snapshot.limit_cents)
    return render(
        ctx,
        "admin/account.html",
        row=row,
        usage=usage,
        chart=day_chart(usage.days, "%m-%d") if usage else None,
        history=history,
        ledger=ledger,
        notices=notices,
        not_resendable=NOT_RESENDABLE,
        failed_notices=sum(1 for n in notices if n.status == "failed"),
        failed_webhooks=failed_webhooks,
        invoices=invoices,
        has_login=bool(logins),
        web_sessions=web_sessions,
        admin_actions=admin_actions,
        workflow_url=temporal_ui(request, account_id),
        unit=unit,
        value=value,
        error=error,
    )


@router.get("/admin/accounts/{account_id}/usage/live")
async def usage_live(account_id: str, ctx: Admin) -> Response:
    request = ctx.request
    await _account_or_404(request, account_id)
    ctx.account = await service_of(request).load(account_id)
    usage = await data.live_usage(service_of(request), db_of(request), account_id, with_days=True)
    return render(
        ctx,
        "app/_usage.html",
        usage=usage,
        chart=day_chart(usage.days, "%m-%d") if usage else None,
        live_url=f"/admin/accounts/{account_id}/usage/live",
    )


# --- actions: each one confirmed, with a reason for the audit trail -----------------------------


@dataclass
class Pending:
    """An admin action waiting for "confirm" and a reason (admin/confirm.html)."""

    account_id: str
    action: str  # where the confirming form posts
    title: str
    consequences: list[str]
    button: str
    fields: dict[str, str] = field(default_factory=dict)  # the values posted again
    reason: str = ""
    error: str | None = None


def _reason(form: FormData) -> tuple[str, str | None]:
    """(reason, problem): the reason as given, and why it is not acceptable (or None)."""
    value = form.get("reason", "")
    reason = value.strip() if isinstance(value, str) else ""
    if not reason:
        return reason, "A reason is required; it goes into the account's audit trail."
    if len(reason) > REASON_MAX:
        return reason[:REASON_MAX], f"The reason has {len(reason)} characters; at most 500."
    return reason, None


def _confirmed(form: FormData, pending: Pending) -> tuple[str | None, Pending]:
    """The reason when the action is confirmed with a valid one; else the pending page."""
    reason, problem = _reason(form)
    if form.get("confirm") != "1":
        return None, pending
    if problem is not None:
        pending.reason, pending.error = reason, problem
        return None, pending
    return reason, pending


def _confirm_page(ctx: PageContext, pending: Pending) -> Response:
    return render(
        ctx,
        "admin/confirm.html",
        status_code=422 if pending.error else 200,
        pending=pending,
        reason_max=REASON_MAX,
    )


async def _audit(
    request: Request,
    ctx: PageContext,
    account_id: str,
    action: str,
    reason: str,
    target: str | None,
    outcome: str,
) -> None:
    assert ctx.user is not None
    await run_in_threadpool(
        data.record_admin_action,
        db_of(request),
        account_id,
        ctx.user.actor,
        action,
        reason,
        target,
        outcome[:2000],
    )


def _setting_text(settings: ExtraMinutesSettings, t: Translator) -> str:
    if not settings.enabled:
        return "Off"
    if settings.limit_minutes is not None:
        return f"On · limit {formatting.minutes_unit(settings.limit_minutes, 'en')}"
    return f"On · limit {t.money(settings.limit_cents)}"


def _limit_consequences(usage: data.Usage | None, wanted: ExtraMinutesSettings) -> list[str]:
    if usage is None:
        return ["The account's workflow did not answer: its current use is unknown."]
    snapshot = usage.snapshot
    used = (
        f"{formatting.minutes_seconds(snapshot.extra_seconds, 'en')} "
        f"of extra minutes ({formatting.money(snapshot.extra_cost_cents, 'en')})"
    )
    lines = [f"Used this period: {used}."]
    left = snapshot.included_seconds - usage.included_used_seconds
    if not wanted.enabled and snapshot.enabled:
        lines.append(
            "Calls stop at once: the included minutes are used up."
            if left <= 0
            else "Calls stop once the included minutes are used up "
            f"({formatting.minutes_unit(left // 60, 'en')} left)."
        )
    elif wanted.enabled and snapshot.extra_seconds > 0:
        # A malformed limit (-1 from the form) is left to the workflow's validator.
        if min(wanted.limit_cents or 0, wanted.limit_minutes or 0) >= 0:
            if allowed_extra_seconds(wanted, usage.plan) <= snapshot.extra_seconds:
                lines.append(f"Calls stop at once because the customer has already used {used}.")
    return lines


@router.post("/admin/accounts/{account_id}/extra-minutes")
async def change_limit(account_id: str, ctx: Admin) -> Response:
    request = ctx.request
    await check_csrf(request)
    await _account_or_404(request, account_id)
    form = await request.form()
    wanted = ExtraMinutesSettings(False)
    if form.get("enabled") == "on":
        value = str(form.get("limit_value", ""))
        if form.get("limit_unit") == "minutes":
            minutes = parse_minutes(value, "en")
            wanted = ExtraMinutesSettings(True, None, minutes if minutes is not None else -1)
        else:
            cents = parse_euros(value, "en")
            wanted = ExtraMinutesSettings(True, cents if cents is not None else -1, None)
    assert ctx.user is not None
    service = service_of(request)
    usage = await data.live_usage(service, db_of(request), account_id)
    reason, pending = _confirmed(
        form,
        Pending(
            account_id=account_id,
            action=request.url.path,
            title=f"Set extra minutes of {account_id} to: {_setting_text(wanted, ctx.t)}?",
            consequences=_limit_consequences(usage, wanted),
            button="Confirm: apply now",
            fields={
                "enabled": str(form.get("enabled", "")),
                "limit_unit": str(form.get("limit_unit", "eur")),
                "limit_value": str(form.get("limit_value", ""))[:32],
            },
        ),
    )
    if reason is None:
        return _confirm_page(ctx, pending)
    try:
        # The reason lands in settings_change.reason, beside the change itself.
        await service.change_extra_minutes(account_id, wanted, actor=ctx.user.actor, reason=reason)
    except ApiError as err:
        # A refused change has no settings_change row: the console's own table keeps it.
        outcome = f"refused: {err.code}: {err.detail}"
        await _audit(
            request, ctx, account_id, "change_limit", reason, _setting_text(wanted, ctx.t), outcome
        )
        flash(request, f"{err.code}: {err.detail}", "error")
    else:
        flash(request, "Settings changed; the workflow applied them.")
    return RedirectResponse(f"/admin/accounts/{account_id}", status_code=303)


@router.post("/admin/accounts/{account_id}/password")
async def set_password(account_id: str, ctx: Admin) -> Response:
    request = ctx.request
    await check_csrf(request)
    await _account_or_404(request, account_id)
    form = await request.form()
    password = str(form.get("password", ""))
    if not 8 <= len(password) <= 256:
        flash(request, "A password needs 8 to 256 characters.", "error")
        return RedirectResponse(f"/admin/accounts/{account_id}", status_code=303)
    reason, pending = _confirmed(
        form,
        Pending(
            account_id=account_id,
            action=request.url.path,
            title=f"Set a new web password for {account_id}?",
            consequences=[
                "The customer's other web sessions end at once; they sign in with the new password."
            ],
            button="Confirm: set password",
            fields={"password": password},
        ),
    )
    if reason is None:
        return _confirm_page(ctx, pending)
    try:
        await run_in_threadpool(security.set_password, db_of(request), account_id, password)
    except LookupError as err:
        raise PageError(404, "notfound") from err
    except ValueError as err:
        outcome = f"refused: {err}"
        flash(request, str(err), "error")
    else:
        outcome = "password set, other sessions ended"
        flash(request, "Password set; the customer's other sessions have ended.")
    await _audit(request, ctx, account_id, "set_password", reason, None, outcome)
    return RedirectResponse(f"/admin/accounts/{account_id}", status_code=303)


@router.post("/admin/accounts/{account_id}/sessions/end")
async def end_sessions(account_id: str, ctx: Admin) -> Response:
    """Sign the customer out of every browser now (their password stays)."""
    request = ctx.request
    await check_csrf(request)
    await _account_or_404(request, account_id)
    form = await request.form()
    reason, pending = _confirmed(
        form,
        Pending(
            account_id=account_id,
            action=request.url.path,
            title=f"End every web session of {account_id}?",
            consequences=["The customer is signed out of every browser at once."],
            button="Confirm: end sessions",
        ),
    )
    if reason is None:
        return _confirm_page(ctx, pending)
    ended = await run_in_threadpool(sessions.end_account_sessions, db_of(request), account_id)
    # The mobile app's sign-ins end too: "sign out everywhere" means everywhere.
    apps = await run_in_threadpool(customer_tokens.revoke_account, db_of(request), account_id)
    outcome = (
        f"ended {ended} web session{'s' if ended != 1 else ''} "
        f"and {apps} mobile sign-in{'s' if apps != 1 else ''}"
    )
    await _audit(request, ctx, account_id, "end_sessions", reason, None, outcome)
    flash(request, f"{outcome.capitalize()} of the customer.")
    return RedirectResponse(f"/admin/accounts/{account_id}", status_code=303)


@router.post("/admin/accounts/{account_id}/notices/{notice_id}/resend")
async def resend_notice(account_id: str, notice_id: int, ctx: Admin) -> Response:
    request = ctx.request
    await check_csrf(request)
    await _account_or_404(request, account_id)
    notice = await run_in_threadpool(_notice, db_of(request), account_id, notice_id)
    if not notices.resendable(notice.kind):
        flash(
            request,
            f"A {notice.kind} notice confirms one change; it cannot be sent again "
            "with this period's figures.",
            "error",
        )
        return RedirectResponse(f"/admin/accounts/{account_id}#notices", status_code=303)
    form = await request.form()
    reason, pending = _confirmed(
        form,
        Pending(
            account_id=account_id,
            action=request.url.path,
            title=f"Send '{notice.subject}' to the customer again?",
            consequences=[
                f"An email goes to {notice.to} now, with this period's figures as they are "
                "now; it is listed as a resent notice."
            ],
            button="Confirm: resend",
        ),
    )
    if reason is None:
        return _confirm_page(ctx, pending)
    target = f"notice {notice_id} ({notice.kind})"
    snapshot = None
    try:
        snapshot = await service_of(request).snapshot(account_id)
    except ApiError:
        pass
    try:
        sent = await run_in_threadpool(
            _resend, request, account_id, notice_id, snapshot.period_end if snapshot else None
        )
    except LookupError as err:
        raise PageError(404, "notfound") from err
    except OSError as err:
        await _audit(request, ctx, account_id, "resend_notice", reason, target, f"failed: {err}")
        flash(request, f"Could not send: {err}", "error")
    else:
        await _audit(
            request, ctx, account_id, "resend_notice", reason, target, f"sent to {sent.to}"
        )
        flash(request, f"Sent '{sent.subject}' to {sent.to} again.")
    return RedirectResponse(f"/admin/accounts/{account_id}#notices", status_code=303)


def _notice(db: str, account_id: str, notice_id: int) -> Notification:
    with session_scope(db) as session:
        notice = session.get(Notification, notice_id)
    if notice is None or notice.account_id != account_id:
        raise PageError(404, "notfound")
    return notice


def _resend(
    request: Request, account_id: str, notice_id: int, current_period_end: datetime | None
) -> Notification:
    """Send a notice again, with this period's figures as they are now; recorded as a
    new ``notification`` row (key ``<original key>:resend:<id>``)."""
    settings = settings_of(request)
    catalog = service_of(request).catalog
    db = db_of(request)
    with session_scope(db) as session:
        original = session.get(Notification, notice_id)
        account = session.get(Account, account_id)
        if original is None or account is None or original.account_id != account_id:
            raise LookupError(notice_id)
        plan = catalog[account.plan]
        extra_seconds = session.exec(
            select(func.coalesce(func.sum(UsageEntry.billed_extra_seconds), 0)).where(
                UsageEntry.account_id == account_id,
                UsageEntry.period_start == original.period_start,
            )
        ).one()
        invoice = session.exec(
            select(Invoice).where(
                Invoice.account_id == account_id, Invoice.period_start == original.period_start
            )
        ).first()
        closed = session.exec(
            select(ClosedPeriod).where(
                ClosedPeriod.account_id == account_id,
                ClosedPeriod.period_start == original.period_start,
            )
        ).first()
    period_end = (
        invoice.period_end if invoice else closed.period_end if closed else current_period_end
    ) or original.period_start
    limit = limit_as_cents(
        ExtraMinutesSettings(account.extra_enabled, account.limit_cents, account.limit_minutes),
        plan,
    )
    figures = notices.Figures(
        kind=original.kind,
        locale=account.locale,
        timezone=account.timezone,
        period_start=original.period_start,
        period_end=period_end,
        extra_seconds=extra_seconds,
        extra_cost_cents=(
            invoice.amount_cents
            if invoice
            else cost_cents(extra_seconds, plan.extra_minute_price_cents)
        ),
        # A resend states the limit in EUR (a minutes limit by its EUR value), as it
        # always has.
        limit_cents=limit,
        limit_minutes=None,
        price_cents=plan.extra_minute_price_cents,
        link=invoice.hosted_invoice_url if invoice else None,
        final=False,
        # extra_minutes_disabled: the row does not keep why. Told from the account as
        # it is now (no payment method: its removal; else the customer's switch-off).
        cause=DISABLED_NO_PAYMENT_METHOD
        if account.payment_method_id is None
        else DISABLED_BY_CUSTOMER,
    )
    # No NoticeRecord: the row keeps no threshold, plan or method, and the templates'
    # defaults stand in for them.
    email = notices.notice_email(settings, figures)
    resend_id = uuid.uuid4().hex[:12]
    mailer.send(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.mail_from,
        to=account.email,
        email=email,
        message_id=notices.resend_message_id(
            original.kind, original.period_start, resend_id, account_id
        ),
        headers=notices.notice_headers(original.kind, account_id, resent=True),
    )
    row = Notification(
        account_id=account_id,
        kind=original.kind,
        notice_key=f"{original.notice_key.split(':resend:')[0]}:resend:{resend_id}"[:128],
        to=account.email,
        subject=email.subject[:256],
        period_start=original.period_start,
        sent_at=datetime.now(UTC),
    )
    with session_scope(db) as session:
        session.add(row)
        session.commit()
    return row


@router.post("/admin/accounts/{account_id}/invoices/{invoice_id}/retry")
async def retry_payment(account_id: str, invoice_id: int, ctx: Admin) -> Response:
    """Charge a failed invoice again now (the invoice workflow's immediate retry)."""
    request = ctx.request
    await check_csrf(request)

    def find() -> Invoice | None:
        with session_scope(db_of(request)) as session:
            return session.get(Invoice, invoice_id)

    invoice = await run_in_threadpool(find)
    if invoice is None or invoice.account_id != account_id:
        raise PageError(404, "notfound")
    if invoice.status == "processing":
        # A SEPA debit is under way: charging now would debit the customer twice.
        flash(request, "The invoice's direct debit is still processing; nothing to retry.", "error")
        return RedirectResponse(f"/admin/accounts/{account_id}#invoices", status_code=303)
    form = await request.form()
    reason, pending = _confirmed(
        form,
        Pending(
            account_id=account_id,
            action=request.url.path,
            title=f"Charge the invoice of {ctx.t.money(invoice.amount_cents)} again now?",
            consequences=[
                f"Stripe charges {invoice.stripe_invoice_id or 'the invoice'} at once with the "
                "customer's payment method on file; a decline sends the customer another "
                "payment-failed notice."
            ],
            button="Confirm: retry payment",
        ),
    )
    if reason is None:
        return _confirm_page(ctx, pending)
    target = f"invoice {invoice_id} ({invoice.stripe_invoice_id or 'no Stripe id'})"
    handle = request.app.state.temporal.get_workflow_handle(
        invoice_workflow_id(account_id, period_key(invoice.period_start))
    )
    try:
        await handle.signal(InvoiceWorkflow.payment_method_updated)
    except RPCError as err:
        await _audit(
            request, ctx, account_id, "retry_payment", reason, target, f"failed: {err.message}"
        )
        flash(request, f"The invoice's workflow is not running: {err.message}", "error")
    else:
        await _audit(request, ctx, account_id, "retry_payment", reason, target, "retry requested")
        flash(request, "Payment retry requested; the invoice workflow charges again now.")
    return RedirectResponse(f"/admin/accounts/{account_id}#invoices", status_code=303)
