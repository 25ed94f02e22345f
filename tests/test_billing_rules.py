"""The pure billing rules: money rounding, limits, validation and billing periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.rules import (
    BillingRuleError,
    ExtraMinutesSettings,
    LimitBounds,
    PlanTerms,
    allowed_extra_seconds,
    cost_cents,
    period_containing,
    validate_settings,
)

# Pure billing rules: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

STARTER = PlanTerms("starter", 2900, 100, 39)
FREE = PlanTerms("free", 0, 30, 0)
BOUNDS = LimitBounds(max_limit_cents=1_000_000, max_limit_minutes=100_000)


@pytest.mark.parametrize(
    ("seconds", "price", "cents"),
    [
        (0, 39, 0),
        (60, 39, 39),
        (1, 39, 1),  # 0.65 → 1 (half up)
        (10, 3, 1),  # 0.5 → 1: half rounds up, not to even
        (30, 1, 1),  # 0.5 → 1
        (29, 1, 0),  # 0.483 → 0
        (90, 29, 44),  # 43.5 → 44
        (6000, 39, 3900),
    ],
)
def test_cost_rounds_once_half_up(seconds: int, price: int, cents: int) -> None:
    assert cost_cents(seconds, price) == cents


@given(limit=st.integers(1, 1_000_000), price=st.integers(1, 500))
def test_a_eur_limit_buys_seconds_whose_cost_never_exceeds_it(limit: int, price: int) -> None:
    plan = PlanTerms("p", 100, 0, price)
    seconds = allowed_extra_seconds(ExtraMinutesSettings(True, limit_cents=limit), plan)
    assert cost_cents(seconds, price) <= limit
    # ... and it is the most it can buy: one second more would cost more than the limit
    # before rounding.
    assert (seconds + 1) * price > limit * 60


def test_minutes_limit_is_exact() -> None:
    assert allowed_extra_seconds(ExtraMinutesSettings(True, limit_minutes=200), STARTER) == 12000


@pytest.mark.parametrize(
    ("settings", "code"),
    [
        (ExtraMinutesSettings(True), "invalid_limit"),
        (ExtraMinutesSettings(True, limit_cents=100, limit_minutes=5), "invalid_limit"),
        (ExtraMinutesSettings(True, limit_cents=0), "invalid_limit"),
        (ExtraMinutesSettings(True, limit_cents=-5), "invalid_limit"),
        (ExtraMinutesSettings(True, limit_minutes=0), "invalid_limit"),
        (ExtraMinutesSettings(True, limit_cents=1_000_001), "invalid_limit"),
        (ExtraMinutesSettings(True, limit_minutes=100_001), "invalid_limit"),
        (ExtraMinutesSettings(False, limit_cents=100), "invalid_limit"),
    ],
)
def test_invalid_limits_are_refused(settings: ExtraMinutesSettings, code: str) -> None:
    with pytest.raises(BillingRuleError) as caught:
        validate_settings(settings, STARTER, BOUNDS)
    assert caught.value.code == code


def test_free_plans_are_not_eligible() -> None:
    with pytest.raises(BillingRuleError) as caught:
        validate_settings(ExtraMinutesSettings(True, limit_cents=5000), FREE, BOUNDS)
    assert caught.value.code == "not_eligible"
    validate_settings(ExtraMinutesSettings(False), FREE, BOUNDS)  # switching off is fine


def test_calendar_month_in_the_accounts_time_zone() -> None:
    # 23:30 UTC on 31 Oct is already 1 Nov in Berlin (UTC+1 after the DST change).
    at = datetime(2026, 10, 31, 23, 30, tzinfo=UTC)
    start, end = period_containing(at, timezone="Europe/Berlin", period_seconds=None, anchor=at)
    assert start.isoformat() == "2026-11-01T00:00:00+01:00"
    assert end.isoformat() == "2026-12-01T00:00:00+01:00"
    dec_start, dec_end = period_containing(
        datetime(2026, 12, 31, 22, 59, tzinfo=UTC),
        timezone="Europe/Berlin",
        period_seconds=None,
        anchor=at,
    )
    assert dec_start.isoformat() == "2026-12-01T00:00:00+01:00"
    assert dec_end.isoformat() == "2027-01-01T00:00:00+01:00"
    # A month that spans the spring DST change is still midnight to midnight.
    mar_start, mar_end = period_containing(
        datetime(2026, 3, 15, tzinfo=UTC), timezone="Europe/Berlin", period_seconds=None, anchor=at
    )
    assert mar_start.isoformat() == "2026-03-01T00:00:00+01:00"
    assert mar_end.isoformat() == "2026-04-01T00:00:00+02:00"


@given(offset=st.integers(0, 10_000_000), length=st.integers(1, 100_000))
def test_fixed_periods_tile_time_from_the_anchor(offset: int, length: int) -> None:
    anchor = datetime(2026, 1, 1, 12, 0, 7, tzinfo=UTC)
    at = anchor + timedelta(seconds=offset)
    start, end = period_containing(at, timezone="UTC", period_seconds=length, anchor=anchor)
    assert start <= at < end
    assert (end - start).total_seconds() == length
    assert ((start - anchor).total_seconds()) % length == 0
