"""Request and response bodies of the HTTP API (the contract the telephony backend uses)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class Body(BaseModel):
    # Unknown fields are an error, numbers must be JSON integers (no "5", no 5.5, no true).
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorOut(BaseModel):
    error: str
    detail: str


class CardDeclinedOut(ErrorOut):
    """402 ``card_declined``: the card was refused and nothing was saved."""

    decline_code: str = Field(
        description="Stripe's reason, e.g. `generic_decline`, `insufficient_funds`, "
        "`expired_card`, `incorrect_cvc` (https://docs.stripe.com/declines/codes)."
    )


class PlanOut(BaseModel):
    plan: str
    monthly_fee_cents: int
    included_minutes: int
    extra_minute_price_cents: int


def _string_or_absent(schema: dict[str, Any]) -> None:
    """OpenAPI: a string that may be left out, but not null (see AccountIn.timezone)."""
    schema.pop("anyOf", None)
    schema.pop("default", None)
    schema.update(type="string", maxLength=64)


class AccountIn(Body):
    """A new account. Values are stored as sent or refused (422), never silently
    trimmed; ``account_id`` and ``email`` are unique whatever their case (409)."""

    account_id: str = Field(
        pattern=ID_PATTERN,
        description="Unique, also case-insensitively: `SEC-A1` and `sec-a1` cannot both exist.",
    )
    email: EmailStr = Field(
        description=(
            "A bare address (`name@example.com`): no display name (`Name <...>`), no "
            "surrounding spaces. The domain is stored normalised (lower case). One account "
            "per address, compared case-insensitively (409 `email_taken`)."
        )
    )
    plan: str = Field(min_length=1, max_length=64)
    locale: Literal["de", "en"] | None = None
    timezone: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "An IANA time zone name such as `Europe/Berlin` (422 `invalid_timezone` "
            "otherwise, the empty string included). Leave it out for the server's default; "
            "null is refused."
        ),
        json_schema_extra=_string_or_absent,
    )

    @field_validator("email", mode="before")
    @classmethod
    def _bare_address(cls, value: object) -> object:
        # EmailStr would quietly turn " Name <a@b.com> " into "a@b.com": what was sent
        # and what is stored must not differ behind the caller's back.
        if isinstance(value, str):
            if value != value.strip():
                raise ValueError("no leading or trailing spaces allowed")
            if "<" in value or ">" in value:
                raise ValueError("a bare address without a display name, e.g. name@example.com")
            if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
                raise ValueError("no control characters allowed")
        return value

    @model_validator(mode="after")
    def _timezone_given_or_absent(self) -> AccountIn:
        if "timezone" in self.model_fields_set and self.timezone is None:
            raise ValueError("timezone: give an IANA zone name, or leave it out for the default")
        return self


class AccountOut(BaseModel):
    account_id: str
    email: str
    plan: str
    locale: str
    timezone: str
    created_at: str


class ExtraMinutesIn(Body):
    enabled: bool
    limit_cents: int | None = None
    limit_minutes: int | None = None


REASON_DESCRIPTION = "Why (an admin's words): kept with the change in the settings history."
CHANGE_ID_DESCRIPTION = (
    "Optional: the same value on every retry of this one change, so that it applies once."
)


class PlanIn(Body):
    plan: str = Field(min_length=1, max_length=64, description="A plan id of GET /v1/plans.")
    change_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description=CHANGE_ID_DESCRIPTION
    )
    reason: str | None = Field(default=None, max_length=500, description=REASON_DESCRIPTION)


class AlertsIn(Body):
    thresholds: list[int] = Field(
        max_length=5,
        description=(
            "Warning thresholds in percent of the limit, each 1–99 and once (default [90]); "
            "the 100 % stop always notifies. Each notifies once per period and limit."
        ),
    )
    recipients: list[str] | None = Field(
        default=None,
        max_length=5,
        description=(
            "Extra addresses every notice also goes to, besides the account's. Left out: "
            "unchanged; [] removes them."
        ),
    )
    change_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description=CHANGE_ID_DESCRIPTION
    )
    reason: str | None = Field(default=None, max_length=500, description=REASON_DESCRIPTION)


class AlertsOut(BaseModel):
    thresholds: list[int]
    recipients: list[str]


class ExtraMinutesOut(BaseModel):
    enabled: bool
    limit_cents: int | None
    limit_minutes: int | None
    extra_allowed_seconds: int
    accepting_calls: bool
    stop_reason: str | None


REQUEST_ID_DESCRIPTION = (
    "Optional, chosen by the telephony backend: the same value on every retry of this one "
    "request (after a 503 or a lost answer), so that the retry gets the answer the "
    "request got, never a second grant. Without it each HTTP request is a new request."
)


class AuthorizeIn(Body):
    account_id: str = Field(pattern=ID_PATTERN)
    call_id: str = Field(pattern=ID_PATTERN)
    request_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description=REQUEST_ID_DESCRIPTION
    )


class AuthorizeOut(BaseModel):
    allowed: bool
    granted_seconds: int | None = None
    # call_ended: the call was already reported (settled); it is never granted again.
    reason: (
        Literal["limit_reached", "included_minutes_exhausted", "payment_overdue", "call_ended"]
        | None
    ) = None


class UsageIn(Body):
    account_id: str = Field(pattern=ID_PATTERN)
    call_id: str = Field(pattern=ID_PATTERN)
    # The call's total once it ended; the upper bound is checked against settings.
    seconds: int = Field(ge=0)
    request_id: str | None = Field(
        default=None, pattern=ID_PATTERN, description=REQUEST_ID_DESCRIPTION
    )


class UsageOut(BaseModel):
    recorded: bool
    duplicate: bool


class PricedUsageOut(BaseModel):
    plan: str
    seconds: int
    unit_price_cents: int
    cost_cents: int


class StateOut(BaseModel):
    period_start: str
    period_end: str
    plan: str
    included_seconds: int
    used_seconds: int
    extra_seconds: int
    extra_cost_cents: int
    enabled: bool
    limit_cents: int | None
    limit_minutes: int | None
    extra_allowed_seconds: int
    reserved_seconds: int
    accepting_calls: bool
    stop_reason: str | None
    # Beyond the telephony contract (additive): payment status for admins and the web app.
    payment_method_on_file: bool = False
    payment_overdue: bool = False
    # Side effects not delivered yet: a receiver, the mail relay or the database is down.
    undelivered_notices: int = 0
    undelivered_events: int = 0
    unwritten_usage: int = 0
    # The plan's terms in force now (a plan change applies at once) and the thresholds.
    monthly_fee_cents: int = 0
    extra_minute_price_cents: int = 0
    included_used_seconds: int = 0
    alert_thresholds: list[int] = Field(default_factory=lambda: [90])
    priced_usage: list[PricedUsageOut] = Field(
        default_factory=list,
        description="This period's extra seconds by price (several after a plan change).",
    )


class NotificationOut(BaseModel):
    kind: str
    to: str
    sent_at: str  # when sent, or when given up (status "failed")
    period_start: str
    # Additive: "sent", or "failed" (could never be delivered; ``error`` says why).
    status: str = "sent"
    error: str | None = None


class CheckOut(BaseModel):
    ok: bool
    detail: str | None = None


Dependency = Literal["temporal", "worker", "database"]


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    # One flag per dependency (kept for existing monitors), the names of those down, and
    # each check's answer (starter/health.py).
    temporal: bool
    worker: bool
    database: bool
    down: list[Dependency] = []
    checks: dict[str, CheckOut] = {}


class LiveOut(BaseModel):
    status: Literal["alive"]


class PaymentSetupOut(BaseModel):
    client_secret: str
    publishable_key: str


class PaymentMethodIn(Body):
    payment_method_id: str = Field(pattern=r"^pm_[A-Za-z0-9_]{1,100}$")


class PaymentMethodOut(BaseModel):
    id: str
    type: str
    brand: str | None
    last4: str | None
    bank_code: str | None


# processing: a SEPA direct debit being collected (days); unpaid, not failed.
InvoiceStatus = Literal["paid", "open", "processing", "payment_failed", "void", "draft"]


class InvoiceOut(BaseModel):
    period_start: str
    period_end: str
    extra_seconds: int
    amount_cents: int
    currency: str
    status: InvoiceStatus
    stripe_invoice_id: str | None
    hosted_invoice_url: str | None
