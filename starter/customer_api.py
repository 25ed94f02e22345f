"""The customer API for the mobile app: sign-in with tokens, and read-only account data.

The mobile app shows extra minutes but cannot switch them on: the help article puts
that, the limit and the payment details in the web app, where Stripe takes the details.
So this API reads and never changes:

* ``POST /v1/auth/token``: OAuth 2.0 style (RFC 6749), form-encoded
  (``application/x-www-form-urlencoded``, what OAuth clients send) or JSON.
  ``grant_type=password`` with the web app's email and password gives a short-lived
  access token and a refresh token; ``grant_type=refresh_token`` rotates them
  (``starter/customer_tokens.py``). Failed sign-ins count in the web login's throttle
  (per client address and per account, shared with ``/login``); instead of the web
  app's emailed code the API answers 429 with ``Retry-After``.
* ``POST /v1/auth/revoke`` (RFC 7009 style): signing out ends the token's sign-in, or
  every sign-in of the account with ``all_devices``.
* ``GET /v1/me``, ``/v1/me/extra-minutes``, ``/v1/me/invoices``: the token's own
  account only, from the live workflow snapshot and the database.
* Every attempt to change extra minutes or payment details with a customer token is
  ``403 web_app_only`` with the web app's page (here and on the admin routes,
  ``starter/auth.py``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from overtime.db import as_utc, session_scope
from overtime.models import Account, Invoice, WebLogin, WebLoginFailure
from overtime.settings import Settings
from starter import customer_tokens
from starter.auth import (
    WEB_APP_PAGES,
    CurrentCustomer,
    DetailedApiError,
    WebAppOnly,
    web_app_url,
)
from starter.customer_tokens import IssuedTokens, TokenLifetimes
from starter.errors import ApiError
from starter.schemas import ErrorOut
from starter.services import AccountService
from starter.web import security
from starter.web.i18n import Translator, pick_language
from starter.web.login import client_address, throttle_of

log = logging.getLogger(__name__)
router = APIRouter(tags=["mobile app"])

MAX_INVOICES_PER_PAGE = 100
M = TypeVar("M", bound=BaseModel)


# --- bodies ---------------------------------------------------------------------------------


class WebAppOnlyOut(BaseModel):
    # "forbidden" (without url) for the admin or telephony token on a customer route.
    error: Literal["web_app_only", "forbidden"]
    detail: str
    url: str | None = Field(
        default=None,
        description="The web app's page for this setting (absolute URL); with web_app_only.",
    )


class ThrottledOut(BaseModel):
    error: Literal["throttled"]
    detail: str
    reason: Literal["address", "account"] = Field(
        description=(
            "`address`: too many failed sign-ins from this client address. `account`: too "
            "many failed sign-ins to this email (the web app still signs the owner in, "
            "with a code it emails)."
        )
    )
    retry_after: int = Field(description="Seconds, as in the `Retry-After` header.")


class TokenRequest(BaseModel):
    """The token endpoint's parameters (form fields or JSON keys). Unknown parameters
    (``scope``, ``client_id``) are ignored, as RFC 6749 §3.2 asks; each may appear once."""

    model_config = ConfigDict(extra="ignore", strict=True)
    grant_type: str = Field(max_length=64, description="`password` or `refresh_token`.")
    username: str | None = Field(
        default=None,
        min_length=1,
        max_length=320,
        validation_alias=AliasChoices("username", "email"),
        description="password grant: the email the customer signs in to the web app with "
        "(`email` is accepted too).",
    )
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    refresh_token: str | None = Field(
        default=None, min_length=1, max_length=customer_tokens.TOKEN_MAX_LENGTH
    )

    @model_validator(mode="after")
    def _grant_has_its_parameters(self) -> TokenRequest:
        needed = {"password": ("username", "password"), "refresh_token": ("refresh_token",)}
        missing = [name for name in needed.get(self.grant_type, ()) if getattr(self, name) is None]
        if missing:
            raise ValueError(f"grant_type={self.grant_type} needs {' and '.join(missing)}")
        return self


class TokenOut(BaseModel):
    access_token: str = Field(description="Send as `Authorization: Bearer …` to /v1/me/*.")
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int = Field(description="Seconds the access token is valid.")
    refresh_token: str = Field(description="Single use: each refresh returns a new one.")
    refresh_token_expires_in: int
    account_id: str


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    token: str = Field(min_length=1, max_length=customer_tokens.TOKEN_MAX_LENGTH)
    token_type_hint: Literal["access_token", "refresh_token"] | None = None
    all_devices: bool = Field(
        default=False,
        description="Also end every other sign-in of the account (needs a live token).",
    )

    @field_validator("all_devices", mode="before")
    @classmethod
    def _form_boolean(cls, value: object) -> object:
        # A form field is text; JSON sends a real boolean.
        if isinstance(value, str):
            lowered = value.lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0", ""):
                return False
        return value


class RevokeOut(BaseModel):
    revoked: int = Field(description="Sign-ins ended (0 for an unknown or revoked token).")


class MeOut(BaseModel):
    account_id: str
    email: str
    plan: str
    locale: str
    timezone: str


class LimitEur(BaseModel):
    unit: Literal["eur"]
    cents: int


class LimitMinutes(BaseModel):
    unit: Literal["minutes"]
    minutes: int


Limit = Annotated[LimitEur | LimitMinutes, Field(discriminator="unit")]


class SecondsAndMinutes(BaseModel):
    seconds: int
    minutes: int = Field(description="Whole minutes, rounded down (billing is per second).")


class IncludedOut(BaseModel):
    minutes: int = Field(description="Included minutes of the plan in this period.")
    used: SecondsAndMinutes
    remaining_seconds: int


class PeriodOut(BaseModel):
    start: str = Field(description="ISO 8601 with the account's UTC offset.")
    end: str = Field(description="Exclusive; ISO 8601 with the account's UTC offset.")


class PaymentMethodSummary(BaseModel):
    type: str = Field(description="`card` or `sepa_debit`.")
    brand: str | None = Field(description="Card brand (`visa`, …); null for SEPA.")
    bank: str | None = Field(description="SEPA: the bank code; null for cards.")
    last4: str | None


class ExtraMinutesMeOut(BaseModel):
    account_id: str
    plan: str
    currency: str
    enabled: bool
    limit: Limit | None = Field(description="In the unit the customer chose; null when off.")
    allowed_seconds: int = Field(description="Extra seconds the limit allows this period.")
    used: SecondsAndMinutes = Field(description="Extra minutes used this period.")
    cost_cents: int = Field(description="What the extra minutes used so far cost.")
    price_per_minute_cents: int
    included: IncludedOut
    alert_thresholds: list[int] = Field(
        description="Percent of the limit at which the customer is warned by email (the "
        "stop at 100 % always notifies)."
    )
    accepting_calls: bool
    stop_reason: str | None = Field(
        description="Why calls are not taken: `limit_reached`, "
        "`included_minutes_exhausted`, `payment_overdue`; null while accepting."
    )
    payment_overdue: bool
    period: PeriodOut
    payment_method: PaymentMethodSummary | None
    manage_url: str = Field(description="The web app's page to change all of this.")


class InvoiceMeOut(BaseModel):
    period: PeriodOut
    extra_seconds: int
    amount_cents: int
    currency: str
    status: str = Field(
        description="`paid`, `open`, `processing` (a SEPA direct debit being collected: "
        "unpaid, not failed, takes days), `payment_failed`, `void` or `draft`."
    )
    status_label: str = Field(
        description="The status in the account's language, as the web app shows it "
        "(`Lastschrift wird eingezogen` / `Direct debit being collected`)."
    )
    hosted_invoice_url: str | None
    created_at: str


class InvoicePageOut(BaseModel):
    invoices: list[InvoiceMeOut] = Field(description="Newest period first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


# --- OpenAPI: the errors each route documents ----------------------------------------------

_UNAUTHORIZED = {
    "model": ErrorOut,
    "description": "`unauthorized` (no bearer token), `token_expired` (refresh it) or "
    "`invalid_token` (revoked, a new password, unknown: sign in again).",
}
_FORBIDDEN = {
    "model": ErrorOut,
    "description": "`forbidden`: the admin or telephony token; /v1/me/* takes a customer "
    "access token.",
}
_UNAVAILABLE = {
    "model": ErrorOut,
    "description": "`unavailable`: the account's workflow did not answer in time.",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
}
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _UNAUTHORIZED,
    403: _FORBIDDEN,
    422: {"model": ErrorOut},
}
WEB_APP_ONLY_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _UNAUTHORIZED,
    403: {
        "model": WebAppOnlyOut,
        "description": "Always, for a customer token: `web_app_only`, with the web app's "
        "page in `url`. The admin or telephony token: `forbidden`.",
    },
}
TOKEN_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorOut,
        "description": "`invalid_grant` (RFC 6749 §5.2): a wrong email or password, or a "
        "refresh token that is unknown, expired, revoked or already used (a used one "
        "presented again ends its sign-in on every device).",
    },
    415: {"model": ErrorOut, "description": "Neither a form nor JSON."},
    422: {
        "model": ErrorOut,
        "description": "`invalid_request` (a parameter missing, repeated or malformed) or "
        "`unsupported_grant_type`.",
    },
    429: {
        "model": ThrottledOut,
        "description": "`throttled`: too many failed sign-ins (see `reason`).",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": schema},
                "application/json": {"schema": schema},
            },
        }
    }


# --- plumbing -------------------------------------------------------------------------------


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _db(request: Request) -> str:
    return _settings(request).resolved_database_url()


def _secret(request: Request) -> str:
    return request.app.state.web_settings.web_session_secret


def _service(request: Request) -> AccountService:
    return request.app.state.service


def _lifetimes(settings: Settings) -> TokenLifetimes:
    return TokenLifetimes(
        access_seconds=settings.customer_access_token_ttl_seconds,
        refresh_seconds=settings.customer_refresh_token_ttl_seconds,
        family_seconds=settings.customer_token_max_age_seconds,
    )


async def _parameters(request: Request) -> dict[str, Any]:
    """The body as parameters: a form (OAuth clients) or a JSON object."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not media and not await request.body():
        return {}  # nothing sent: the validation names what is missing
    if media == "application/x-www-form-urlencoded":
        form = await request.form()
        items = form.multi_items()
        names = [name for name, _ in items]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:  # RFC 6749 §3.2: a parameter must not appear more than once
            raise ApiError(422, "invalid_request", f"repeated parameter: {', '.join(repeated)}")
        return {name: value for name, value in items if isinstance(value, str)}
    if media == "application/json":
        try:
            body = await request.json()
        except ValueError as err:
            raise ApiError(422, "invalid_request", "the body is not valid JSON") from err
        if not isinstance(body, dict):
            raise ApiError(422, "invalid_request", "the body must be a JSON object")
        return body
    raise ApiError(
        415,
        "unsupported_media_type",
        "send application/x-www-form-urlencoded (as OAuth 2.0 clients do) or application/json",
    )


def _validated(model: type[M], parameters: dict[str, Any]) -> M:
    try:
        return model.model_validate(parameters)
    except ValidationError as err:
        # The API's own handler words it: "field: reason; …" with 422 invalid_request.
        raise RequestValidationError(err.errors()) from err


def _token_response(issued: IssuedTokens) -> JSONResponse:
    now = datetime.now(UTC)
    body = TokenOut(
        access_token=issued.access_token,
        expires_in=max(0, round((issued.access_expires_at - now).total_seconds())),
        refresh_token=issued.refresh_token,
        refresh_token_expires_in=max(0, round((issued.refresh_expires_at - now).total_seconds())),
        account_id=issued.account_id,
    )
    # RFC 6749 §5.1: tokens are never cached.
    return JSONResponse(
        body.model_dump(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def _log_failure(email: str, ip: str, reason: str, failures: int | None = None) -> None:
    log.warning(
        "customer API sign-in failed",
        extra={
            "event": "customer_login_failed",
            "email_hash": security.email_digest(email),
            "email_masked": security.mask_email(email),
            "client": ip,
            "reason": reason,
            "failures": failures,
        },
    )


def _throttled(reason: Literal["address", "account"], retry_after: int) -> DetailedApiError:
    why = (
        "too many failed sign-ins from this address"
        if reason == "address"
        else "too many failed sign-ins to this account: sign in to the web app (it emails "
        "a one-time code), or wait"
    )
    return DetailedApiError(
        429,
        "throttled",
        f"{why}; try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
        extra={"reason": reason, "retry_after": retry_after},
    )


def _account_retry_after(db: str, throttle: security.Throttle, email: str) -> int:
    """Seconds until the account's failures in the window drop below the limit (the
    web login's code step would let the owner in sooner; the API has none)."""
    email_key, _ = throttle.keys(email, "")
    now = datetime.now(UTC)
    since = now - timedelta(seconds=throttle.window_seconds)
    with session_scope(db) as session:
        times = list(
            session.exec(
                select(WebLoginFailure.failed_at)
                .where(WebLoginFailure.key == email_key, WebLoginFailure.failed_at >= since)
                .order_by(col(WebLoginFailure.failed_at).desc())
            )
        )
    if len(times) < throttle.max_per_email:
        return 1
    # Below the limit once all but max - 1 of the newest have aged out.
    deciding = as_utc(times[throttle.max_per_email - 1])
    left = (deciding + timedelta(seconds=throttle.window_seconds) - now).total_seconds()
    return max(1, math.ceil(left))


async def _customer_login(request: Request, email: str, password: str) -> WebLogin | None:
    """The customer's login when the password is right. The admin's email and unknown
    emails cost the same Argon2 time as a wrong password (the admin has its token)."""
    db = _db(request)
    web = request.app.state.web_settings
    if security.normalise_email(email) == security.normalise_email(web.admin_email):
        await run_in_threadpool(security.burn_time, password)
        return None
    found = await run_in_threadpool(security.find_login, db, email)
    if found is None:
        await run_in_threadpool(security.burn_time, password)
        return None
    if not await run_in_threadpool(security.verify_password, found.password_hash, password):
        return None
    if security.needs_rehash(found.password_hash):
        await run_in_threadpool(security.rehash, db, found.account_id, password)
    return found


async def _password_grant(request: Request, email: str, password: str) -> IssuedTokens:
    db = _db(request)
    throttle = throttle_of(request)
    ip = client_address(request)
    status = await run_in_threadpool(throttle.status, db, email, ip)
    if throttle.address_blocked(status):
        _log_failure(email, ip, "address_throttled", status.email_failures)
        raise _throttled("address", status.ip_retry_after)
    if throttle.code_required(status):
        # The web app would now ask for an emailed code; the API has no such step, so
        # it waits (without trying the password, which would tell whether it is right).
        _log_failure(email, ip, "account_throttled", status.email_failures)
        retry = await run_in_threadpool(_account_retry_after, db, throttle, email)
        raise _throttled("account", retry)
    wait = throttle.delay(status)
    if wait:
        await asyncio.sleep(wait)  # in the event loop: a waiting guesser holds no thread
    login = await _customer_login(request, email, password)
    if login is None:
        failures = await run_in_threadpool(throttle.failed, db, email, ip)
        _log_failure(email, ip, "wrong_credentials", failures)
        raise ApiError(400, "invalid_grant", "wrong email or password")
    await run_in_threadpool(throttle.succeeded, db, email)
    issued = await run_in_threadpool(
        customer_tokens.sign_in, db, _secret(request), _lifetimes(_settings(request)), login
    )
    log.info(
        "customer API sign-in",
        extra={"event": "customer_login", "account_id": login.account_id, "client": ip},
    )
    return issued


REFRESH_PROBLEMS = {
    "invalid": "unknown refresh token: sign in again",
    "expired": "the refresh token has expired: sign in again",
    "revoked": "this sign-in was ended (signed out, a new password or the admin): sign in again",
    "reused": "this refresh token was used before; to be safe its sign-in is ended on every "
    "device: sign in again",
}


# --- routes: tokens ---------------------------------------------------------------------------


@router.post(
    "/v1/auth/token",
    response_model=TokenOut,
    responses=TOKEN_ERRORS,
    openapi_extra=_body_schema(TokenRequest),
    summary="Sign in (password grant) or refresh (refresh_token grant)",
)
async def token(request: Request) -> JSONResponse:
    """The mobile app's sign-in, with the email and password of the web app.

    `grant_type=password&username=<email>&password=…` gives an access token
    (`OVERTIME_CUSTOMER_ACCESS_TOKEN_TTL_SECONDS`, 15 min) and a refresh token
    (`OVERTIME_CUSTOMER_REFRESH_TOKEN_TTL_SECONDS`, 30 days). `grant_type=refresh_token&
    refresh_token=…` spends the refresh token for a new pair: each refresh token works
    once, and one used twice ends its sign-in on every device (RFC 9700 §4.14.2). A
    sign-in lasts `OVERTIME_CUSTOMER_TOKEN_MAX_AGE_SECONDS` (90 days) at most however
    often it is refreshed. Form-encoded (`application/x-www-form-urlencoded`, as OAuth 2.0
    clients send it) or JSON."""
    parameters = await _parameters(request)
    grant = _validated(TokenRequest, parameters)
    if grant.grant_type == "password":
        assert grant.username is not None and grant.password is not None
        return _token_response(await _password_grant(request, grant.username, grant.password))
    if grant.grant_type == "refresh_token":
        assert grant.refresh_token is not None
        outcome = await run_in_threadpool(
            customer_tokens.refresh,
            _db(request),
            _secret(request),
            _lifetimes(_settings(request)),
            grant.refresh_token,
        )
        if outcome.issued is None:
            raise ApiError(400, "invalid_grant", REFRESH_PROBLEMS[outcome.problem])
        return _token_response(outcome.issued)
    raise ApiError(
        422,
        "unsupported_grant_type",
        f"grant_type {grant.grant_type!r}: use password or refresh_token",
    )


@router.post(
    "/v1/auth/revoke",
    response_model=RevokeOut,
    responses={415: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    openapi_extra=_body_schema(RevokeRequest),
    summary="Sign out: revoke a token's sign-in (or every sign-in of the account)",
)
async def revoke(request: Request) -> RevokeOut:
    """`token=<access or refresh token>` ends that sign-in at once: its access and
    refresh tokens stop working. With `all_devices=true` (and a live token) every
    sign-in of the account ends. Answers 200 for an unknown token too (RFC 7009 §2.2)."""
    body = _validated(RevokeRequest, await _parameters(request))
    ended = await run_in_threadpool(
        customer_tokens.revoke,
        _db(request),
        _secret(request),
        body.token,
        all_devices=body.all_devices,
    )
    return RevokeOut(revoked=ended)


# --- routes: the customer's own account -------------------------------------------------------


def _account_row(db: str, account_id: str) -> Account | None:
    with session_scope(db) as session:
        return session.get(Account, account_id)


async def _own_account(request: Request, account_id: str) -> Account:
    row = await run_in_threadpool(_account_row, _db(request), account_id)
    if row is None:  # the account was deleted under a live token
        raise ApiError(401, "invalid_token", "the token's account no longer exists")
    return row


@router.get("/v1/me", response_model=MeOut, responses=READ_ERRORS, summary="Who is signed in")
async def me(request: Request, customer: CurrentCustomer) -> MeOut:
    row = await _own_account(request, customer.account_id)
    return MeOut(
        account_id=row.account_id,
        email=row.email,
        plan=row.plan,
        locale=row.locale,
        timezone=row.timezone,
    )


def _seconds_and_minutes(seconds: int) -> SecondsAndMinutes:
    return SecondsAndMinutes(seconds=seconds, minutes=seconds // 60)


def _payment_method(row: Account) -> PaymentMethodSummary | None:
    # The account row's mirror of Stripe's default method: brand, bank and last 4 only
    # (never the method's id, the IBAN or anything Stripe keeps).
    if row.payment_method_id is None or row.payment_method_type is None:
        return None
    return PaymentMethodSummary(
        type=row.payment_method_type,
        brand=row.payment_method_brand,
        bank=row.payment_method_bank,
        last4=row.payment_method_last4,
    )


@router.get(
    "/v1/me/extra-minutes",
    response_model=ExtraMinutesMeOut,
    responses={**READ_ERRORS, 503: _UNAVAILABLE},
    summary="Extra minutes: on or off, the limit, usage, cost, period, payment method",
)
async def extra_minutes(request: Request, customer: CurrentCustomer) -> ExtraMinutesMeOut:
    """Live figures from the account's workflow. Read-only: `manage_url` is where the
    customer switches extra minutes on or off, sets the limit and the payment method."""
    service = _service(request)
    settings = _settings(request)
    start_input = await service.load(customer.account_id)
    snapshot = await service.snapshot(customer.account_id)
    row = await _own_account(request, customer.account_id)
    zone = ZoneInfo(start_input.profile.timezone)
    plan = service.catalog.get(snapshot.plan, start_input.plan)
    # Newer snapshots carry these themselves (the plan can change within a period).
    price = getattr(snapshot, "extra_minute_price_cents", None)
    if price is None:
        price = plan.extra_minute_price_cents
    included_used = getattr(snapshot, "included_used_seconds", None)
    if included_used is None:
        included_used = snapshot.used_seconds - snapshot.extra_seconds
    limit: LimitEur | LimitMinutes | None = None
    if snapshot.enabled and snapshot.limit_minutes is not None:
        limit = LimitMinutes(unit="minutes", minutes=snapshot.limit_minutes)
    elif snapshot.enabled and snapshot.limit_cents is not None:
        limit = LimitEur(unit="eur", cents=snapshot.limit_cents)
    return ExtraMinutesMeOut(
        account_id=customer.account_id,
        plan=snapshot.plan,
        currency=settings.currency,
        enabled=snapshot.enabled,
        limit=limit,
        allowed_seconds=snapshot.extra_allowed_seconds,
        used=_seconds_and_minutes(snapshot.extra_seconds),
        cost_cents=snapshot.extra_cost_cents,
        price_per_minute_cents=price,
        included=IncludedOut(
            minutes=snapshot.included_seconds // 60,
            used=_seconds_and_minutes(included_used),
            remaining_seconds=max(0, snapshot.included_seconds - included_used),
        ),
        alert_thresholds=list(getattr(snapshot, "alert_percents", [90])),
        accepting_calls=snapshot.accepting_calls,
        stop_reason=snapshot.stop_reason,
        payment_overdue=snapshot.payment_overdue,
        period=PeriodOut(
            start=snapshot.period_start.astimezone(zone).isoformat(),
            end=snapshot.period_end.astimezone(zone).isoformat(),
        ),
        payment_method=_payment_method(row),
        manage_url=web_app_url(settings),
    )


def _encode_cursor(period_start: datetime) -> str:
    micros = int(as_utc(period_start).timestamp() * 1_000_000)
    return base64.urlsafe_b64encode(f"v1:{micros}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> datetime:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, micros = text.partition(":")
        if version != "v1" or not micros.isdigit():
            raise ValueError(text)
        return datetime.fromtimestamp(int(micros) / 1_000_000, UTC)
    except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError, OSError) as err:
        raise ApiError(
            422, "invalid_cursor", "cursor: give the next_cursor of the previous page"
        ) from err


def _invoice_page(
    db: str, account_id: str, limit: int, before: datetime | None
) -> tuple[list[Invoice], bool]:
    with session_scope(db) as session:
        query = select(Invoice).where(Invoice.account_id == account_id)
        if before is not None:
            query = query.where(col(Invoice.period_start) < before)
        rows = list(
            session.exec(
                query.order_by(col(Invoice.period_start).desc(), col(Invoice.id).desc()).limit(
                    limit + 1
                )
            )
        )
    return rows[:limit], len(rows) > limit


@router.get(
    "/v1/me/invoices",
    response_model=InvoicePageOut,
    responses=READ_ERRORS,
    summary="Invoices, newest first, a page at a time",
)
async def invoices(
    request: Request,
    customer: CurrentCustomer,
    limit: Annotated[int, Query(ge=1, le=MAX_INVOICES_PER_PAGE)] = 20,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> InvoicePageOut:
    """One invoice per period with extra minutes; `hosted_invoice_url` is Stripe's page
    for it (view, download, pay)."""
    before = _decode_cursor(cursor) if cursor else None
    row = await _own_account(request, customer.account_id)
    zone = ZoneInfo(row.timezone)
    words = Translator(pick_language(row.locale))
    rows, more = await run_in_threadpool(
        _invoice_page, _db(request), customer.account_id, limit, before
    )

    def local(value: datetime) -> str:
        return as_utc(value).astimezone(zone).isoformat()

    return InvoicePageOut(
        invoices=[
            InvoiceMeOut(
                period=PeriodOut(start=local(r.period_start), end=local(r.period_end)),
                extra_seconds=r.extra_seconds,
                amount_cents=r.amount_cents,
                currency=r.currency,
                status=r.status,
                status_label=words.label("invoice.", r.status),
                hosted_invoice_url=r.hosted_invoice_url,
                created_at=local(r.created_at),
            )
            for r in rows
        ],
        next_cursor=_encode_cursor(rows[-1].period_start) if more and rows else None,
    )


# --- routes: what only the web app changes ----------------------------------------------------

_CHANGES = ("PUT", "POST", "PATCH", "DELETE")
_WEB_APP_ONLY_ROUTES = {
    "/v1/me/extra-minutes": (_CHANGES, WEB_APP_PAGES["extra-minutes"]),
    "/v1/me/payment-method": (_CHANGES, WEB_APP_PAGES["payment-method"]),
    "/v1/me/payment-setup": (("POST",), WEB_APP_PAGES["payment-setup"]),
}


def _web_app_only_route(path: str, method: str, page: tuple[str, str]) -> None:
    async def refuse(request: Request, customer: CurrentCustomer) -> None:
        raise WebAppOnly(web_app_url(_settings(request), page[0]), page[1])

    refuse.__name__ = f"web_app_only_{method.lower()}_{path.rsplit('/', 1)[-1].replace('-', '_')}"
    router.add_api_route(
        path,
        refuse,
        methods=[method],
        status_code=403,
        response_model=None,
        responses=WEB_APP_ONLY_ERRORS,
        summary="Refused: changed in the web app only",
        description="Extra minutes, the limit and payment details are changed in the web "
        "app (the customer's password, Stripe for the payment details), never with a "
        "customer token: always `403 web_app_only` with the page's `url`.",
    )


for _path, (_methods, _page) in _WEB_APP_ONLY_ROUTES.items():
    for _method in _methods:
        _web_app_only_route(_path, _method, _page)


# --- installation ----------------------------------------------------------------------------


def install_customer_api(app: FastAPI) -> None:
    """The routes, and the answer of errors with fields beyond ``error`` and ``detail``
    (``web_app_only``'s ``url``, the throttle's ``reason``)."""
    app.include_router(router)

    @app.exception_handler(DetailedApiError)
    async def detailed_error(_: Request, err: DetailedApiError) -> JSONResponse:
        return JSONResponse(
            {"error": err.code, "detail": err.detail, **err.extra},
            status_code=err.status,
            headers=err.headers or None,
        )
