"""Spend forecast for the overview: where the period ends up at the current rate.

Pure: no I/O and no clock (the caller passes ``now``), integer seconds and cents only.

Rules:

* The rate is the period's usage so far (included and extra seconds alike) divided by
  the time elapsed since the period started. It assumes the rest of the period looks
  like the part already gone: a linear projection, no weekday or trend model.
* With less than :data:`MIN_ELAPSED_SECONDS` (one day) of the period gone, one busy
  morning would project a month: the forecast says "too early" instead.
* Projected extra seconds are whatever the projection uses beyond the included
  seconds, capped at what the limit allows (the account stops at the limit); with extra
  minutes off there is no extra cost to project. Extra seconds already used keep the
  cost they were billed at (``extra_cost_cents``, which may be at an older plan's
  price); only the projected rest is priced at ``price_cents`` per minute. The total
  never exceeds ``limit_cents``.
* The limit date is the local calendar day (in the account's time zone) on which the
  projection reaches included + allowed extra seconds, if that moment is before the
  period ends; otherwise none ("not at this rate"). Already at the limit: the flag
  ``limit_reached`` and no date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from billing.rules import cost_cents

MIN_ELAPSED_SECONDS = 86_400  # less than a day of data says too little about a month


@dataclass(frozen=True)
class ForecastInput:
    period_start: datetime
    period_end: datetime
    now: datetime
    timezone: str
    used_seconds: int  # included + extra seconds billed so far this period
    included_seconds: int  # the plan's allowance for the period
    extra_seconds: int  # extra seconds billed so far
    extra_cost_cents: int  # what those cost (at the price they were used at)
    extras_enabled: bool
    extra_allowed_seconds: int  # the limit in seconds (0 when extra minutes are off)
    limit_cents: int | None  # the limit in EUR terms (a minutes limit converted)
    price_cents: int  # the current price of an extra minute


@dataclass(frozen=True)
class Forecast:
    too_early: bool  # less than a day of the period gone: nothing projected
    projected_extra_seconds: int = 0
    projected_extra_cost_cents: int = 0
    limit_reached_on: date | None = None  # None: not at this rate (or no limit)
    limit_reached: bool = False  # already at the limit now


def forecast(given: ForecastInput) -> Forecast:
    length = _seconds(given.period_end - given.period_start)
    elapsed = min(max(_seconds(given.now - given.period_start), 0), length)
    allowed = given.extra_allowed_seconds if given.extras_enabled else 0
    stop_at = given.included_seconds + allowed  # total seconds when calls stop
    at_limit = given.extras_enabled and allowed > 0 and given.extra_seconds >= allowed
    if elapsed < MIN_ELAPSED_SECONDS and not at_limit:
        return Forecast(too_early=True)
    remaining = length - elapsed
    # Integer projection: used × length / elapsed, rounded down (never over-promises).
    projected_used = (
        given.used_seconds + given.used_seconds * remaining // elapsed
        if elapsed
        else given.used_seconds
    )
    projected_used = min(projected_used, stop_at) if given.extras_enabled else projected_used
    projected_extra = (
        max(projected_used - given.included_seconds, given.extra_seconds, 0)
        if given.extras_enabled
        else given.extra_seconds
    )
    if given.extras_enabled:
        projected_extra = min(projected_extra, max(allowed, given.extra_seconds))
    # The rest priced as one line with what is used so far (rounded once, like the
    # invoice), then added to what that part really cost.
    more_cost = cost_cents(projected_extra, given.price_cents) - cost_cents(
        given.extra_seconds, given.price_cents
    )
    cost = given.extra_cost_cents + max(more_cost, 0)
    if given.limit_cents is not None and given.extras_enabled:
        cost = min(cost, max(given.limit_cents, given.extra_cost_cents))
    return Forecast(
        too_early=False,
        projected_extra_seconds=projected_extra,
        projected_extra_cost_cents=cost,
        limit_reached_on=None if at_limit else _limit_day(given, elapsed, stop_at, allowed),
        limit_reached=at_limit,
    )


def _limit_day(given: ForecastInput, elapsed: int, stop_at: int, allowed: int) -> date | None:
    if not given.extras_enabled or allowed <= 0 or given.used_seconds <= 0:
        return None
    # The second of the period at which usage at this rate reaches stop_at (rounded up).
    needed = max(stop_at - given.used_seconds, 0)
    at = elapsed + -(-needed * elapsed // given.used_seconds)
    if at >= _seconds(given.period_end - given.period_start):
        return None  # not before the period ends
    moment = given.period_start + timedelta(seconds=at)
    return moment.astimezone(ZoneInfo(given.timezone)).date()


def _seconds(delta: timedelta) -> int:
    return delta.days * 86_400 + delta.seconds
