"""Changing plans: the customer's plan page and the admin console's plan form.

The workflow applies a change at once (``AccountService.change_plan``, an Update). What a
mid-period change means is the contract's rule, shown on the page before anyone clicks:
the new plan's included minutes count for the whole current period (used ones stay used),
extra minutes used so far stay at the old price, and a plan without a monthly fee switches
extra minutes off.

* An upgrade applies on the first POST. A step down (a lower fee, fewer included minutes,
  or losing extra minutes) first answers with a confirmation page that says what the
  customer loses; only a POST with ``confirm=1`` applies it. No JavaScript needed.
* Every form carries its own change id (a hidden uuid made when the page was shown), so a
  form submitted twice applies once: the workflow dedupes by change id, and the session
  remembers the last ids this browser applied, so a resubmit is answered without asking.
* The admin's form needs a reason; it goes into the change's audit row.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from billing.rules import PlanTerms
from starter.errors import ApiError
from starter.web import data
from starter.web.admin import Admin
from starter.web.customer import Customer, own_account
from starter.web.pages import (
    PageContext,
    PageError,
    check_csrf,
    db_of,
    flash,
    render,
    service_of,
    templates,
)
from starter.web.prices import PRICES_PATH, PlanOffer, offers

router = APIRouter(include_in_schema=False)

CHANGE_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Change ids this browser applied, newest last: a form posted again is answered from here.
APPLIED_KEY = "plan_changes_applied"
REMEMBERED_CHANGES = 5
MAX_REASON = 500


def new_change_id() -> str:
    return str(uuid.uuid4())


def catalog_offers(request: Request) -> list[PlanOffer]:
    return offers(service_of(request).catalog.values())


# The admin account page (starter/web/admin.py) renders the plan form with these.
templates.env.globals["new_change_id"] = new_change_id
templates.env.globals["catalog_offers"] = catalog_offers


def is_step_down(old: PlanTerms, new: PlanTerms) -> bool:
    """Whether the customer may lose something they have now (asks for confirmation)."""
    old_offer, new_offer = PlanOffer(old), PlanOffer(new)
    return (
        new.monthly_fee_cents < old.monthly_fee_cents
        or new.included_minutes < old.included_minutes
        or (old_offer.extra_available and not new_offer.extra_available)
    )


def _change_id(form_value: object) -> str:
    value = str(form_value or "").strip().lower()
    return value if CHANGE_ID.fullmatch(value) else new_change_id()


# --- the customer's plan page ------------------------------------------------------------


def _live_plan(ctx: PageContext, usage: data.Usage | None) -> PlanTerms:
    """The workflow's plan (the truth at once); the account row follows it through the
    settings outbox, so the start input may still name the old one for a moment."""
    assert ctx.account is not None
    if usage is None:
        return ctx.account.plan
    return service_of(ctx.request).catalog.get(usage.snapshot.plan, ctx.account.plan)


async def _plan_page(
    ctx: PageContext,
    account_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
    confirm: PlanOffer | None = None,
    change_id: str | None = None,
) -> Response:
    request = ctx.request
    assert ctx.account is not None
    usage = await data.live_usage(service_of(request), db_of(request), account_id)
    catalog = service_of(request).catalog
    current = _live_plan(ctx, usage)
    values: dict[str, object] = {}
    if confirm is not None:
        # Without the live figures (the workflow did not answer in time) the page says
        # only what is certain; the rules below it still apply.
        used = usage.included_used_seconds if usage else None
        values = {
            "confirm": confirm,
            "old": PlanOffer(current),
            "used_minutes": None if used is None else ctx.t.minutes(used),
            "left_minutes": None
            if used is None
            else ctx.t.minutes(max(0, confirm.terms.included_seconds - used)),
            "extra_enabled": bool(usage and usage.snapshot.enabled),
            "extra_cost_cents": usage.snapshot.extra_cost_cents if usage else 0,
        }
    return render(
        ctx,
        "app/plan.html",
        status_code=status_code,
        nav="plan",
        offers=offers(catalog.values()),
        current=current,
        usage=usage,
        error=error,
        change_id=change_id or new_change_id(),
        prices_url=PRICES_PATH,
        **values,
    )


@router.get("/app/a/{account_id}/plan")
async def plan_page(account_id: str, ctx: Customer) -> Response:
    return await _plan_page(ctx, account_id)


@router.get("/app/plan")
async def plan_link(request: Request) -> Response:
    """A stable address for emails: the signed-in customer's plan page."""
    return RedirectResponse(f"/app/a/{await own_account(request)}/plan", status_code=303)


def _applied(request: Request) -> list[str]:
    value = request.session.get(APPLIED_KEY)
    return [str(v) for v in value] if isinstance(value, list) else []


def _remember(request: Request, applied: Sequence[str], change_id: str) -> None:
    request.session[APPLIED_KEY] = [*applied, change_id][-REMEMBERED_CHANGES:]


@router.post("/app/a/{account_id}/plan")
async def change_plan(account_id: str, ctx: Customer) -> Response:
    request = ctx.request
    await check_csrf(request)
    form = await request.form()
    change_id = _change_id(form.get("change_id"))
    here = f"/app/a/{account_id}/plan"
    applied = _applied(request)
    if change_id in applied:  # the same form again (a double click, a reload): done already
        flash(request, "plan_change.flash_changed")
        return RedirectResponse(here, status_code=303)
    service = service_of(request)
    wanted = service.catalog.get(str(form.get("plan", "")))
    if wanted is None:
        return await _plan_page(
            ctx,
            account_id,
            error=ctx.t("plan_change.error_unknown"),
            status_code=422,
            change_id=change_id,
        )
    usage = await data.live_usage(service, db_of(request), account_id)
    assert ctx.account is not None and ctx.user is not None
    current = _live_plan(ctx, usage)
    if wanted.plan == current.plan:
        flash(request, "plan_change.flash_unchanged")
        return RedirectResponse(here, status_code=303)
    if is_step_down(current, wanted) and form.get("confirm") != "1":
        return await _plan_page(ctx, account_id, confirm=PlanOffer(wanted), change_id=change_id)
    try:
        await service.change_plan(
            account_id, wanted.plan, actor=ctx.user.actor, change_id=change_id
        )
    except ApiError as err:
        key = "unknown" if err.code == "unknown_plan" else "busy"
        return await _plan_page(
            ctx,
            account_id,
            error=ctx.t(f"plan_change.error_{key}"),
            status_code=err.status,
            change_id=change_id,
        )
    _remember(request, applied, change_id)
    flash(request, "plan_change.flash_changed")
    return RedirectResponse(here, status_code=303)


# --- the admin console ----------------------------------------------------------------------


@router.post("/admin/accounts/{account_id}/plan")
async def admin_change_plan(account_id: str, ctx: Admin) -> Response:
    request = ctx.request
    await check_csrf(request)
    if await run_in_threadpool(data.account, db_of(request), account_id) is None:
        raise PageError(404, "notfound")
    form = await request.form()
    plan = str(form.get("plan", ""))
    reason = str(form.get("reason", "")).strip()
    back = RedirectResponse(f"/admin/accounts/{account_id}", status_code=303)
    if not reason:
        flash(request, "A plan change needs a reason (it goes into the audit trail).", "error")
        return back
    if len(reason) > MAX_REASON:
        flash(request, f"The reason may have at most {MAX_REASON} characters.", "error")
        return back
    assert ctx.user is not None
    try:
        await service_of(request).change_plan(
            account_id,
            plan,
            actor=ctx.user.actor,
            change_id=_change_id(form.get("change_id")),
            reason=reason,
        )
    except ApiError as err:
        flash(request, f"{err.code}: {err.detail}", "error")
    else:
        flash(request, f"Plan changed to {plan}; the workflow applied it.")
    return back
