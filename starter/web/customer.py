"""The customer's web app: overview with live usage, the assistant's menu with extra
minutes (switch, limit, payment details through Stripe), invoices and notifications.

Every URL names the account (``/app/a/{account_id}/…``) and every route checks it is
the signed-in customer's own; another account's pages are a 404.

Payment details never pass through this server. The page loads Stripe.js from
``gateway.stripe_js_url`` and asks this server for a SetupIntent (card + SEPA,
``usage=off_session``, created by :class:`starter.payments.PaymentService`); the browser
confirms it with Stripe (``confirmCardSetup`` / ``confirmSepaDebitSetup``, the SEPA
mandate text shown beside the IBAN) and posts only the resulting ``pm_…`` id back, which
``PaymentService.attach`` makes the customer's default and reports to the workflow.

* Real Stripe: the Card Element and the IBAN Element (``supportedCountries: ['SEPA']``),
  iframes served by Stripe; Stripe.js records the mandate acceptance.
* The fake (localstripe's stand-in Stripe.js, proxied by ``devstack/fake_stripe/``):
  its ``elements()`` builds card fields only, whatever type is asked for, so the page
  shows a plain IBAN input instead of the IBAN Element and passes
  ``sepa_debit: {iban}`` to the stand-in's ``confirmSepaDebitSetup`` (a shape real
  Stripe.js accepts too). The input has no ``name`` and sits outside anything posted
  here: the IBAN still goes from the browser to Stripe only.

A declined card: Stripe refuses a card such as 4000 0000 0000 0002 already when the
SetupIntent is confirmed in the browser, so Stripe.js answers with an error (``type``
``card_error``, ``code``, ``decline_code``) and nothing reaches this server. The page
carries :func:`decline_texts` (every Stripe code the browser may meet → the customer's
sentence in the page's language, from ``starter/declines.py``), and the script shows that
sentence rather than Stripe's English one. A decline at ``/payment/method`` (a card
attached without a SetupIntent) is worded the same way on the server.

Switching extra minutes on needs a payment method (``payment_method_required``), and the
help article puts the payment step last: with JavaScript, "save" on the form first
confirms the payment details with Stripe, then posts the settings; without JavaScript the
form answers with the reason and keeps what was entered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypedDict

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from billing.rules import ExtraMinutesSettings, allowed_extra_seconds
from starter.declines import KNOWN_CODES, decline_message
from starter.errors import ApiError
from starter.payments import CardDeclined
from starter.services import parse_percents
from starter.web import data
from starter.web.charts import Chart, day_chart
from starter.web.forecast_view import overview_forecast
from starter.web.forms import FieldErrors, euros_field, minutes_field
from starter.web.i18n import Translator
from starter.web.pages import (
    LoginRequired,
    PageContext,
    PageError,
    Redirect,
    check_csrf,
    current_user,
    db_of,
    flash,
    language,
    render,
    security_headers,
    service_of,
    settings_of,
)

router = APIRouter(include_in_schema=False)


async def customer(request: Request, account_id: str) -> PageContext:
    """The signed-in customer of ``account_id``; anyone else is turned away."""
    user = await current_user(request)
    if user is None:
        raise LoginRequired(request.url.path)
    if user.is_admin:
        raise Redirect(f"/admin/accounts/{account_id}")
    if user.account_id != account_id:
        raise PageError(404, "notfound")
    start_input = await service_of(request).load(account_id)
    t = Translator(language(request, start_input.profile.locale))
    if not request.url.path.endswith("/usage/live"):
        # Every page of the account shows a declined payment (app/layout.html's banner);
        # the live panel, polled every 2 s, has no banner and skips the query.
        request.state.failed_payments = await run_in_threadpool(
            data.failed_payments,
            db_of(request),
            account_id,
            list(settings_of(request).dunning_schedule_seconds),
        )
    return PageContext(request, user, t, start_input)


Customer = Annotated[PageContext, Depends(customer)]


async def own_account(request: Request) -> str:
    user = await current_user(request)
    if user is None:
        raise LoginRequired(request.url.path)
    if user.is_admin:
        raise Redirect("/admin")
    assert user.account_id is not None
    return user.account_id


# --- entry points (also the links in the emails) -------------------------------------------


@router.get("/app")
async def app_home(request: Request) -> Response:
    return RedirectResponse(f"/app/a/{await own_account(request)}", status_code=303)


@router.get("/app/extra-minutes")
async def extra_minutes_link(request: Request) -> Response:
    account_id = await own_account(request)
    return RedirectResponse(f"/app/a/{account_id}/assistant/extra-minutes", status_code=303)


@router.get("/app/payment")
async def payment_link(request: Request) -> Response:
    account_id = await own_account(request)
    return RedirectResponse(f"/app/a/{account_id}/assistant/extra-minutes#payment", status_code=303)


# --- overview and live usage ------------------------------------------------------------


class UsageValues(TypedDict):
    """What the overview and its live panel show (template values)."""

    usage: data.Usage | None
    chart: Chart | None


async def _usage_values(ctx: PageContext, account_id: str) -> UsageValues:
    request = ctx.request
    usage = await data.live_usage(service_of(request), db_of(request), account_id, with_days=True)
    chart = day_chart(usage.days, "%d.%m." if ctx.t.lang == "de" else "%m-%d") if usage else None
    return {"usage": usage, "chart": chart}


@router.get("/app/a/{account_id}")
async def overview(account_id: str, ctx: Customer) -> Response:
    values = await _usage_values(ctx, account_id)
    assert ctx.account is not None
    usage = values["usage"]
    spend = overview_forecast(
        usage if isinstance(usage, data.Usage) else None, ctx.account.profile.timezone
    )
    return render(ctx, "app/overview.html", nav="overview", forecast=spend, **values)


@router.get("/app/a/{account_id}/usage/live")
async def usage_live(account_id: str, ctx: Customer) -> Response:
    """The live usage panel alone; the overview polls it (htmx, every 2 s)."""
    return render(
        ctx,
        "app/_usage.html",
        live_url=f"/app/a/{account_id}/usage/live",
        settings_url=f"/app/a/{account_id}/assistant/extra-minutes",
        **await _usage_values(ctx, account_id),
    )


# --- the assistant's menu ------------------------------------------------------------------


@router.get("/app/a/{account_id}/assistant")
async def assistant(account_id: str, ctx: Customer) -> Response:
    usage = await data.live_usage(service_of(ctx.request), db_of(ctx.request), account_id)
    return render(ctx, "app/assistant.html", nav="assistant", usage=usage)


def _limit_defaults(
    ctx: PageContext, snapshot_settings: ExtraMinutesSettings, history: list
) -> tuple[str, str]:
    """(unit, value) the limit fields show: the current limit, else the last one used."""
    candidates = [snapshot_settings] + [
        ExtraMinutesSettings(True, row.new_limit_cents, row.new_limit_minutes)
        for row in history
        if row.kind == "extra_minutes"
    ]
    for settings in candidates:
        if settings.limit_minutes is not None:
            return "minutes", str(settings.limit_minutes)
        if settings.limit_cents is not None:
            return "eur", ctx.t.euros_input(settings.limit_cents)
    return "eur", ctx.t.euros_input(5000)


async def _extra_minutes_page(
    ctx: PageContext,
    account_id: str,
    *,
    error: str | None = None,
    status_code: int = 200,
    form: dict[str, str] | None = None,
    confirm: Confirmation | None = None,
    errors: FieldErrors | None = None,
) -> Response:
    request = ctx.request
    db = db_of(request)
    assert ctx.account is not None
    plan = ctx.account.plan
    usage = await data.live_usage(service_of(request), db, account_id)
    history = await run_in_threadpool(data.history, db, account_id)
    row = await run_in_threadpool(data.account, db, account_id)
    assert row is not None
    if usage is not None:
        current = ExtraMinutesSettings(
            usage.snapshot.enabled, usage.snapshot.limit_cents, usage.snapshot.limit_minutes
        )
        has_payment_method = usage.snapshot.payment_method_on_file
    else:
        current = ExtraMinutesSettings(row.extra_enabled, row.limit_cents, row.limit_minutes)
        has_payment_method = row.payment_method_id is not None
    unit, value = _limit_defaults(ctx, current, history)
    enabled = current.enabled
    if form is not None:
        unit, value, enabled = form["unit"], form["value"], form["enabled"] == "on"
    gateway = request.app.state.payments.gateway
    settings = settings_of(request)
    catalog = service_of(request).catalog
    return render(
        ctx,
        "app/extra_minutes.html",
        status_code=status_code,
        nav="extra_minutes",
        plan=plan,
        paid_plans=[p for p in catalog.values() if p.is_paid and p.extra_minute_price_cents > 0],
        usage=usage,
        enabled=enabled,
        unit=unit,
        value=value,
        allowed_seconds=allowed_extra_seconds(current, plan) if current.enabled else 0,
        payment=row if row.payment_method_id else None,
        has_payment_method=has_payment_method,
        history=history,
        error=error,
        errors=errors or FieldErrors(),
        confirm=confirm,
        stripe_js_url=gateway.stripe_js_url,
        stripe_fake=not gateway.stripe_js_url.startswith("https://js.stripe.com/"),
        publishable_key=gateway.publishable_key,
        declines=decline_texts(ctx.t),
        email=row.email,
        equals=_equals(ctx.t, unit, value, plan.extra_minute_price_cents),
        max_eur=ctx.t.money(settings.max_limit_cents),
        max_minutes=ctx.t.whole_minutes(settings.max_limit_minutes),
        # The account's warning thresholds ("50 %, 75 %, 90 %"), as the workflow has them.
        warn_at=", ".join(
            f"{p}\u00a0%"
            for p in (
                usage.snapshot.alert_percents if usage else parse_percents(row.alert_percents)
            )
        ),
    )


def decline_texts(t: Translator) -> dict[str, str]:
    """For the page's script: each Stripe code (``decline_code`` or error ``code``) to
    :func:`decline_message`, in the page's language."""
    return {code: decline_message(t, code) for code in KNOWN_CODES}


def _equals(t: Translator, unit: str, value: str, price_cents: int) -> str:
    """What the limit amounts to in the other unit (the page's script keeps it live)."""
    if price_cents <= 0:
        return ""
    if unit == "minutes":
        minutes = t.parse_minutes(value)
        return t("limit.equals_eur", amount=t.money(minutes * price_cents)) if minutes else ""
    cents = t.parse_euros(value)
    if not cents or cents <= 0:
        return ""
    return t("limit.equals_minutes", minutes=t.minutes_floor(cents * 60 // price_cents))


@dataclass
class Confirmation:
    """A change that stops calls (or may) waits for the customer's second "yes".

    The rule is the server's: a POST without ``confirm=1`` is answered with this
    section, whose form carries the same values again plus ``confirm=1``.
    """

    action: str  # where the confirming form posts
    title: str
    consequences: list[str]
    button: str
    fields: dict[str, str]  # the values posted again


def _used(t: Translator, usage: data.Usage, unit: str) -> str:
    """The extra minutes used this period, in the unit the customer set the limit in."""
    if unit == "minutes":
        return t("payments.used_minutes", minutes=t.minutes(usage.snapshot.extra_seconds))
    return t.money(usage.snapshot.extra_cost_cents)


def _switch_off_consequence(t: Translator, usage: data.Usage | None, product: str) -> str:
    """What switching extra minutes off does to calls now."""
    if usage is None:
        return t("payments.off_stops_later", product=product)
    left = usage.snapshot.included_seconds - usage.included_used_seconds
    if left <= 0:
        return t("payments.off_stops_now", product=product)
    return t("payments.off_stops_when_included_used", product=product, left=t.minutes(left))


def _limit_consequences(
    t: Translator,
    usage: data.Usage | None,
    wanted: ExtraMinutesSettings,
    unit: str,
    product: str,
) -> list[str]:
    """Why a settings change needs confirming; empty when it does not."""
    if usage is None:
        return [_switch_off_consequence(t, usage, product)] if not wanted.enabled else []
    snapshot = usage.snapshot
    if not wanted.enabled:
        if not snapshot.enabled:
            return []
        lines = [_switch_off_consequence(t, usage, product)]
        if snapshot.extra_seconds:
            lines.append(t("payments.used_stays_billed", used=_used(t, usage, unit)))
        return lines
    used = snapshot.extra_seconds
    if used > 0 and allowed_extra_seconds(wanted, usage.plan) <= used:
        # Extra seconds are only used once the included ones are gone: calls stop now.
        return [t("payments.limit_below_use", product=product, used=_used(t, usage, unit))]
    return []


@router.get("/app/a/{account_id}/assistant/extra-minutes")
async def extra_minutes(account_id: str, ctx: Customer) -> Response:
    return await _extra_minutes_page(ctx, account_id)


@router.post("/app/a/{account_id}/assistant/extra-minutes")
async def save_extra_minutes(account_id: str, ctx: Customer) -> Response:
    request = ctx.request
    await check_csrf(request)
    form = await request.form()
    fields = {
        "enabled": str(form.get("enabled", "")),
        "unit": "minutes" if form.get("limit_unit") == "minutes" else "eur",
        "value": str(form.get("limit_value", ""))[:32],
    }
    settings = settings_of(request)
    t = ctx.t

    async def again(key: str, status: int) -> Response:
        message = t(
            key,
            max_eur=t.money(settings.max_limit_cents),
            max_minutes=t.whole_minutes(settings.max_limit_minutes),
        )
        return await _extra_minutes_page(
            ctx, account_id, error=message, status_code=status, form=fields
        )

    if fields["enabled"] == "on":
        # The limit's error goes to its field, in the field's one unit, in the page's
        # number format ("1.000,50" on a German page).
        errors = FieldErrors()
        if fields["unit"] == "minutes":
            minutes = minutes_field(
                errors, t, "limit-value", fields["value"], max_minutes=settings.max_limit_minutes
            )
            wanted = ExtraMinutesSettings(True, None, minutes)
        else:
            cents = euros_field(
                errors, t, "limit-value", fields["value"], max_cents=settings.max_limit_cents
            )
            wanted = ExtraMinutesSettings(True, cents, None)
        if errors:
            return await _extra_minutes_page(
                ctx, account_id, errors=errors, status_code=422, form=fields
            )
    else:
        wanted = ExtraMinutesSettings(False)
    assert ctx.user is not None
    service = service_of(request)
    usage = await data.live_usage(service, db_of(request), account_id)
    unchanged = usage is not None and wanted == ExtraMinutesSettings(
        usage.snapshot.enabled, usage.snapshot.limit_cents, usage.snapshot.limit_minutes
    )
    consequences = (
        []
        if unchanged or form.get("confirm") == "1"
        else _limit_consequences(t, usage, wanted, fields["unit"], settings.product_name)
    )
    if consequences:
        confirmation = Confirmation(
            action=request.url.path,
            title=t("payments.confirm_off_title")
            if not wanted.enabled
            else t("payments.confirm_limit_title"),
            consequences=consequences,
            button=t("payments.confirm_off") if not wanted.enabled else t("payments.confirm_limit"),
            fields={
                "enabled": fields["enabled"],
                "limit_unit": fields["unit"],
                "limit_value": fields["value"],
            },
        )
        return await _extra_minutes_page(ctx, account_id, form=fields, confirm=confirmation)
    if not unchanged:
        try:
            await service.change_extra_minutes(account_id, wanted, actor=ctx.user.actor)
        except ApiError as err:
            key = {
                "payment_method_required": "error.payment_method_required",
                "not_eligible": "error.not_eligible",
                "unavailable": "error.busy",
            }.get(err.code, "error.invalid_limit")
            return await again(key, err.status)
    flash(request, "flash.saved")
    return RedirectResponse(request.url.path, status_code=303)


# --- payment details (Stripe) -------------------------------------------------------------


@router.post("/app/a/{account_id}/payment/setup-intent")
async def setup_intent(account_id: str, ctx: Customer) -> Response:
    """A SetupIntent's client secret for Stripe.js (card or SEPA, off-session use)."""
    await check_csrf(ctx.request)
    try:
        intent = await ctx.request.app.state.payments.setup_intent(account_id)
    except ApiError as err:
        return _json_error(ctx, err)
    return security_headers(ctx.request, JSONResponse({"client_secret": intent["client_secret"]}))


class PaymentMethodIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    payment_method_id: str = Field(pattern=r"^pm_[A-Za-z0-9_]{1,100}$")


@router.post("/app/a/{account_id}/payment/method")
async def attach_payment_method(account_id: str, ctx: Customer) -> Response:
    """The browser confirmed a SetupIntent with Stripe.js; store its payment method."""
    await check_csrf(ctx.request)
    try:
        body = PaymentMethodIn.model_validate_json(await ctx.request.body())
    except ValueError:
        return _json_error(ctx, ApiError(422, "invalid_request", "payment_method_id expected"))
    assert ctx.user is not None
    try:
        info = await ctx.request.app.state.payments.attach(
            account_id, body.payment_method_id, actor=ctx.user.actor
        )
    except ApiError as err:
        return _json_error(ctx, err)
    flash(ctx.request, "flash.pm_saved")
    return security_headers(
        ctx.request, JSONResponse({"type": info.type, "last4": info.last4, "brand": info.brand})
    )


@router.post("/app/a/{account_id}/payment/remove")
async def remove_payment_method(account_id: str, ctx: Customer) -> Response:
    request = ctx.request
    await check_csrf(request)
    assert ctx.user is not None
    form = await request.form()
    if form.get("confirm") != "1":
        t = ctx.t
        product = settings_of(request).product_name
        usage = await data.live_usage(service_of(request), db_of(request), account_id)
        enabled = usage.snapshot.enabled if usage is not None else True
        consequences = (
            [t("payments.remove_switches_off"), _switch_off_consequence(t, usage, product)]
            if enabled
            else [t("payments.remove_no_extras")]
        )
        if getattr(request.state, "failed_payments", None):
            consequences.append(t("payments.remove_failed_invoice"))
        confirmation = Confirmation(
            action=request.url.path,
            title=t("payments.confirm_remove_title"),
            consequences=consequences,
            button=t("payments.confirm_remove"),
            fields={},
        )
        return await _extra_minutes_page(ctx, account_id, confirm=confirmation)
    try:
        await ctx.request.app.state.payments.remove(account_id, actor=ctx.user.actor)
    except ApiError as err:
        key = "error.no_payment_method" if err.status == 404 else "error.busy"
        return await _extra_minutes_page(ctx, account_id, error=ctx.t(key), status_code=err.status)
    flash(ctx.request, "flash.pm_removed")
    return RedirectResponse(f"/app/a/{account_id}/assistant/extra-minutes", status_code=303)


def _json_error(ctx: PageContext, err: ApiError) -> Response:
    if isinstance(err, CardDeclined):
        message = decline_message(ctx.t, err.decline_code)
    elif err.status in (402, 422, 502):
        message = ctx.t("error.stripe", detail=err.detail)
    else:
        message = ctx.t("error.busy")
    return security_headers(
        ctx.request,
        JSONResponse({"error": err.code, "message": message}, status_code=err.status),
    )


# --- invoices and notifications ------------------------------------------------------------


@router.get("/app/a/{account_id}/invoices")
async def invoices(account_id: str, ctx: Customer) -> Response:
    rows = await run_in_threadpool(data.invoices, db_of(ctx.request), account_id)
    failed = {f.invoice.id: f for f in getattr(ctx.request.state, "failed_payments", [])}
    return render(ctx, "app/invoices.html", nav="invoices", invoices=rows, failed=failed)


@router.get("/app/a/{account_id}/notices")
async def notices(account_id: str, ctx: Customer) -> Response:
    rows = await run_in_threadpool(data.notifications, db_of(ctx.request), account_id)
    return render(ctx, "app/notices.html", nav="notices", notices=rows)
