"""The overview's spend forecast: the live snapshot handed to :mod:`billing.forecast`."""

from __future__ import annotations

from datetime import UTC, datetime

from billing.forecast import Forecast, ForecastInput, forecast
from starter.web.data import Usage


def overview_forecast(
    usage: Usage | None, timezone: str, now: datetime | None = None
) -> Forecast | None:
    """The forecast for the account's current period; None without live figures."""
    if usage is None:
        return None
    s = usage.snapshot
    price = getattr(s, "extra_minute_price_cents", None) or usage.plan.extra_minute_price_cents
    return forecast(
        ForecastInput(
            period_start=s.period_start,
            period_end=s.period_end,
            now=now or datetime.now(UTC),
            timezone=timezone,
            used_seconds=s.used_seconds,
            included_seconds=s.included_seconds,
            extra_seconds=s.extra_seconds,
            extra_cost_cents=s.extra_cost_cents,
            extras_enabled=s.enabled,
            extra_allowed_seconds=s.extra_allowed_seconds,
            limit_cents=usage.limit_cents,
            price_cents=price,
        )
    )
