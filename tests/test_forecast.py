"""The overview's spend forecast (billing/forecast.py): examples and properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.forecast import MIN_ELAPSED_SECONDS, ForecastInput, forecast
from billing.rules import cost_cents

# Pure forecasting: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

START = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # 1 December, 00:00 in Berlin
END = datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
LENGTH = int((END - START).total_seconds())
INCLUDED = 100 * 60
PRICE = 39


def given_usage(
    used: int,
    elapsed: int,
    *,
    limit_cents: int | None = 780,
    enabled: bool = True,
    price: int = PRICE,
    included: int = INCLUDED,
) -> ForecastInput:
    """A period ``elapsed`` seconds in with ``used`` seconds used, billed as the ledger does."""
    allowed = limit_cents * 60 // price if enabled and limit_cents is not None and price else 0
    extra = min(max(used - included, 0), allowed) if enabled else 0
    return ForecastInput(
        period_start=START,
        period_end=END,
        now=START + timedelta(seconds=elapsed),
        timezone="Europe/Berlin",
        used_seconds=min(used, included + extra),
        included_seconds=included,
        extra_seconds=extra,
        extra_cost_cents=cost_cents(extra, price),
        extras_enabled=enabled,
        extra_allowed_seconds=allowed,
        limit_cents=limit_cents if enabled else None,
        price_cents=price,
    )


def test_less_than_a_day_is_too_early() -> None:
    assert forecast(given_usage(3_000, MIN_ELAPSED_SECONDS - 1)).too_early
    assert not forecast(given_usage(3_000, MIN_ELAPSED_SECONDS)).too_early


def test_a_steady_rate_reaches_the_limit_on_the_expected_day() -> None:
    # 100 min in 10 days: 10 min a day. 100 included + 20 extra (7,80 € at 0,39 €) = 120
    # minutes, reached after 12 days: on 13 December (local).
    result = forecast(given_usage(INCLUDED, 10 * 86_400))
    assert result.limit_reached_on == date(2026, 12, 13)
    assert result.projected_extra_cost_cents == 780  # capped at the limit
    assert result.projected_extra_seconds == 20 * 60


def test_a_slow_rate_does_not_reach_the_limit() -> None:
    # 30 min in 15 days: about 62 min in the period, all included.
    result = forecast(given_usage(30 * 60, 15 * 86_400))
    assert result.limit_reached_on is None
    assert result.projected_extra_cost_cents == 0


def test_at_the_limit_it_says_so() -> None:
    result = forecast(given_usage(10**6, 3 * 3600))
    assert result.limit_reached and result.limit_reached_on is None
    assert result.projected_extra_cost_cents == 780


def test_extras_off_project_no_cost_and_no_date() -> None:
    result = forecast(given_usage(INCLUDED, 10 * 86_400, enabled=False))
    assert result.projected_extra_cost_cents == 0 and result.limit_reached_on is None


usage = st.integers(min_value=0, max_value=400 * 60)
elapsed = st.integers(min_value=0, max_value=LENGTH)
limits = st.one_of(st.none(), st.integers(min_value=1, max_value=100_000))
prices = st.integers(min_value=1, max_value=500)


@settings(max_examples=300, deadline=None)
@given(usage, usage, elapsed, limits, prices)
def test_monotone_in_usage(a: int, b: int, seconds: int, limit: int | None, price: int) -> None:
    low, high = sorted((a, b))
    one = forecast(given_usage(low, seconds, limit_cents=limit, price=price))
    two = forecast(given_usage(high, seconds, limit_cents=limit, price=price))
    if one.too_early or two.too_early:
        return
    assert two.projected_extra_cost_cents >= one.projected_extra_cost_cents
    assert two.projected_extra_seconds >= one.projected_extra_seconds
    # More usage never pushes the limit day later.
    if one.limit_reached_on is not None:
        assert two.limit_reached or (
            two.limit_reached_on is not None and two.limit_reached_on <= one.limit_reached_on
        )


@settings(max_examples=300, deadline=None)
@given(usage, elapsed, limits, prices, st.booleans())
def test_never_above_the_limit_and_the_date_is_in_the_period(
    used: int, seconds: int, limit: int | None, price: int, enabled: bool
) -> None:
    given_ = given_usage(used, seconds, limit_cents=limit, price=price, enabled=enabled)
    result = forecast(given_)
    if result.too_early:
        assert seconds < MIN_ELAPSED_SECONDS
        return
    if given_.limit_cents is not None:
        assert result.projected_extra_cost_cents <= given_.limit_cents
        assert result.projected_extra_seconds <= given_.extra_allowed_seconds
    if not enabled:
        assert result.projected_extra_cost_cents == 0
    assert result.projected_extra_cost_cents >= given_.extra_cost_cents  # what is spent stays
    if result.limit_reached_on is not None:
        now_day = given_.now.astimezone(given_.period_start.tzinfo).date()
        first, last = date(2026, 12, 1), date(2026, 12, 31)
        assert first <= result.limit_reached_on <= last
        assert result.limit_reached_on >= now_day - timedelta(days=1)


def test_the_overview_uses_the_live_snapshot_and_the_price_now_in_force() -> None:
    """The adapter the overview calls: a plan changed mid-period prices the rest at the
    snapshot's price, not the start input's."""
    from billing.rules import PlanTerms
    from starter.web.data import usage
    from starter.web.forecast_view import overview_forecast
    from workflows.types import AccountSnapshot

    snapshot = AccountSnapshot(
        account_id="acct-forecast",
        period_start=START,
        period_end=END,
        plan="business",
        included_seconds=INCLUDED,
        used_seconds=INCLUDED + 600,
        extra_seconds=600,
        extra_cost_cents=390,  # 10 min at the old 0,39 €
        enabled=True,
        limit_cents=10_000,
        limit_minutes=None,
        extra_allowed_seconds=600 + (10_000 - 390) * 60 // 29,
        reserved_seconds=0,
        accepting_calls=True,
        stop_reason=None,
        extra_minute_price_cents=29,
    )
    live = usage(snapshot, PlanTerms("starter", 2900, 100, 39))
    now = START + timedelta(days=10)
    result = overview_forecast(live, "Europe/Berlin", now)
    assert result is not None and not result.too_early
    # 6600 s in 10 days → 20,460 s in 31 days: 14,460 extra seconds; the 13,860 beyond
    # the 600 used cost 0,29 €/min (cost of the whole minus cost of the part used).
    expected = 390 + cost_cents(14_460, 29) - cost_cents(600, 29)
    assert result.projected_extra_cost_cents == expected == 7089
    assert result.limit_reached_on is None  # 20,482 extra seconds allowed: not this period
    assert overview_forecast(None, "Europe/Berlin", now) is None
