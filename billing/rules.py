"""Pure billing rules: money, limits and billing periods.

No I/O and no clocks: the workflow, the activities and the HTTP API all import this
module, and the workflow sandbox passes it through unchanged. Money is integer cents,
rounded once with ``ROUND_HALF_UP``; durations are integer seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo


class BillingRuleError(ValueError):
    """A request that breaks a billing rule; ``code`` is the API's error code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class PlanTerms:
    """What a plan includes and what an extra minute costs (from the catalog)."""

    plan: str
    monthly_fee_cents: int
    included_minutes: int
    extra_minute_price_cents: int

    @property
    def is_paid(self) -> bool:
        return self.monthly_fee_cents > 0

    @property
    def included_seconds(self) -> int:
        return self.included_minutes * 60


@dataclass(frozen=True)
class ExtraMinutesSettings:
    """The customer's choice: extra minutes on or off, and the spending limit."""

    enabled: bool = False
    limit_cents: int | None = None
    limit_minutes: int | None = None


@dataclass(frozen=True)
class LimitBounds:
    max_limit_cents: int
    max_limit_minutes: int


def cost_cents(extra_seconds: int, price_cents_per_minute: int) -> int:
    """Cost of billed extra seconds: seconds × price / 60, rounded once, half up."""
    exact = Decimal(extra_seconds) * Decimal(price_cents_per_minute) / Decimal(60)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def allowed_extra_seconds(settings: ExtraMinutesSettings, plan: PlanTerms) -> int:
    """How many extra seconds the limit pays for.

    A EUR limit buys ``floor(limit × 60 / price)`` seconds, so their cost rounded half up
    never exceeds the limit; a minutes limit is exactly that many minutes.
    """
    if settings.limit_minutes is not None:
        return settings.limit_minutes * 60
    if settings.limit_cents is not None:
        if plan.extra_minute_price_cents <= 0:
            return 0
        return settings.limit_cents * 60 // plan.extra_minute_price_cents
    return 0


def limit_as_cents(settings: ExtraMinutesSettings, plan: PlanTerms) -> int | None:
    if settings.limit_cents is not None:
        return settings.limit_cents
    if settings.limit_minutes is not None:
        return settings.limit_minutes * plan.extra_minute_price_cents
    return None


def validate_settings(settings: ExtraMinutesSettings, plan: PlanTerms, bounds: LimitBounds) -> None:
    """Raise :class:`BillingRuleError` unless ``settings`` may be applied to ``plan``."""
    if not settings.enabled:
        if settings.limit_cents is not None or settings.limit_minutes is not None:
            raise BillingRuleError("invalid_limit", "a limit can only be set with enabled=true")
        return
    if not plan.is_paid or plan.extra_minute_price_cents <= 0:
        raise BillingRuleError(
            "not_eligible",
            f"plan {plan.plan!r} has no monthly fee; extra minutes need a paid plan",
        )
    given = [v for v in (settings.limit_cents, settings.limit_minutes) if v is not None]
    if len(given) != 1:
        raise BillingRuleError("invalid_limit", "give exactly one of limit_cents or limit_minutes")
    if settings.limit_cents is not None and not 0 < settings.limit_cents <= bounds.max_limit_cents:
        raise BillingRuleError(
            "invalid_limit", f"limit_cents must be between 1 and {bounds.max_limit_cents}"
        )
    if (
        settings.limit_minutes is not None
        and not 0 < settings.limit_minutes <= bounds.max_limit_minutes
    ):
        raise BillingRuleError(
            "invalid_limit", f"limit_minutes must be between 1 and {bounds.max_limit_minutes}"
        )
    if allowed_extra_seconds(settings, plan) <= 0:
        raise BillingRuleError("invalid_limit", "the limit does not buy a single extra second")


# --- billing periods ---------------------------------------------------------------


def period_containing(
    at: datetime, *, timezone: str, period_seconds: int | None, anchor: datetime
) -> tuple[datetime, datetime]:
    """The billing period ``[start, end)`` that contains ``at``.

    Calendar months in the account's time zone when ``period_seconds`` is None, else
    fixed-length periods counted from ``anchor`` (the account's creation). Both bounds
    carry the account's UTC offset, so they print as ISO 8601 with offset.
    """
    zone = ZoneInfo(timezone)
    if period_seconds is None:
        local = at.astimezone(zone)
        start = datetime(local.year, local.month, 1, tzinfo=zone)
        return start, _next_month(start, zone)
    elapsed = (at - anchor).total_seconds()
    index = int(elapsed // period_seconds)
    start = anchor + timedelta(seconds=index * period_seconds)
    return start.astimezone(zone), (start + timedelta(seconds=period_seconds)).astimezone(zone)


def _next_month(start: datetime, zone: ZoneInfo) -> datetime:
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return datetime(year, month, 1, tzinfo=zone)


def period_key(period_start: datetime) -> str:
    """A stable text key for a period (idempotency keys, unique constraints)."""
    return period_start.astimezone(ZoneInfo("UTC")).strftime("%Y%m%dT%H%M%SZ")


# --- month-end close ------------------------------------------------------------------


def month_window(label: str, timezone: str) -> tuple[datetime, datetime]:
    """``"2026-11"`` → [1 Nov 00:00, 1 Dec 00:00) in ``timezone``; ValueError if malformed."""
    year, month = (int(part) for part in label.split("-"))
    if not (2000 <= year <= 2999 and 1 <= month <= 12) or len(label) != 7:
        raise ValueError(f"period must look like 2026-11, not {label!r}")
    zone = ZoneInfo(timezone)
    start = datetime(year, month, 1, tzinfo=zone)
    return start, _next_month(start, zone)


def month_label(at: datetime, timezone: str) -> str:
    local = at.astimezone(ZoneInfo(timezone))
    return f"{local.year:04d}-{local.month:02d}"


def previous_month_label(at: datetime, timezone: str) -> str:
    local = at.astimezone(ZoneInfo(timezone))
    year, month = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
    return f"{year:04d}-{month:02d}"
