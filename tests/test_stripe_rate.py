"""The Stripe request budget shared through the database (overtime/stripe_rate.py).

Every test uses the real SQL against the suite's database (SQLite, or PostgreSQL in the
second pass) and its own limiter name, and asserts what the limiter recorded: the rows of
``stripe_rate_window`` (requests granted per window) or, with the database away, its
local record. Nothing is timed: a window's count is what it is however slow the machine.
"""

from __future__ import annotations

import collections
import itertools
import logging
import math
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from devstack.fake_stripe import FakeStripe
from overtime.db import engine_for, init_db
from overtime.settings import Settings
from overtime.stripe_gateway import StripeGateway
from overtime.stripe_rate import (
    DB_RETRY_SECONDS,
    FALLBACK_PROCESSES,
    Priority,
    StripeRateLimiter,
    WindowBudget,
    window_budget,
)
from worker import stripe_activity_slots

ROOT = Path(__file__).resolve().parent.parent
# 25/s: Stripe's test-mode limit; 22 slots a second for background callers, spread over
# ten windows of 2 or 3.
RATE = 25.0
SLOTS = 25
BACKGROUND_SLOTS = 22
# 100/s: every 100 ms window holds 10, 9 of them for background callers.
LIVE_RATE = 100.0
WINDOW_SLOTS = 10
WINDOW_BACKGROUND_SLOTS = 9
# A moment well inside one window, for the tests that hold the clock still.
T0 = 1_800_000_000.25
# Nothing listens there: connecting fails at once.
UNREACHABLE_URLS = [
    "sqlite:////nonexistent-overtime-dir/overtime.db",
    "postgresql+psycopg2://postgres@127.0.0.1:1/overtime",
]


class FakeClock:
    """Wall time that moves only when the limiter sleeps."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def unique_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def windows(database_url: str, name: str) -> dict[int, int]:
    """What the limiter recorded: window start (ms) → requests granted."""
    with engine_for(database_url).connect() as connection:
        rows = connection.execute(
            text("SELECT window_start_ms, used FROM stripe_rate_window WHERE name = :n"),
            {"n": name},
        ).all()
    return {int(start): int(used) for start, used in rows}


def assert_within_budget(recorded: dict[int, int], budget: WindowBudget) -> None:
    """No window above its cap, no second (period) above the budget."""
    per_period: collections.Counter[int] = collections.Counter()
    window_ms = budget.window_seconds * 1000
    for start_ms, used in recorded.items():
        index = round(start_ms / window_ms)
        assert used <= budget.caps[index % len(budget.caps)], (start_ms, used)
        per_period[index // len(budget.caps)] += used
    assert max(per_period.values()) <= budget.slots


def held_still(database_url: str, rate: float = LIVE_RATE) -> tuple[StripeRateLimiter, FakeClock]:
    clock = FakeClock()
    limiter = StripeRateLimiter(
        database_url, rate, name=unique_name(), clock=clock, sleep=clock.sleep
    )
    return limiter, clock


# --- the budget per window ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "period", "slots", "background", "windows"),
    [
        (100.0, 1.0, 100, 90, 10),
        (25.0, 1.0, 25, 22, 10),
        (20.0, 1.0, 20, 18, 10),
        (7.0, 1.0, 7, 6, 7),  # one slot per window
        (2.5, 1.0, 2, 1, 2),  # a second holds whole requests: 2, never 3
        (1.0, 1.0, 1, 1, 1),  # one slot is shared: background must still get through
        (0.25, 4.0, 1, 1, 1),  # one request per 4 s
    ],
)
def test_a_rate_becomes_windows_no_second_above_it(
    rate: float, period: float, slots: int, background: int, windows: int
) -> None:
    budget = window_budget(rate)
    assert (budget.period_seconds, budget.slots, budget.background_slots) == (
        period,
        slots,
        background,
    )
    assert len(budget.caps) == windows
    assert sum(budget.caps) == slots and sum(budget.background_caps) == background
    assert all(0 <= b <= c for b, c in zip(budget.background_caps, budget.caps, strict=True))
    assert max(budget.caps) - min(budget.caps) <= 1  # spread evenly over the second
    assert budget.slots / budget.period_seconds <= rate


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError):
        window_budget(0)


# --- shared by threads and processes ------------------------------------------------------


def test_limiters_in_many_threads_never_pass_the_budget(database_url: str) -> None:
    """Three limiters (three processes' worth) with two threads each, background and
    interactive mixed: no window grants more than its slots, and every request passes."""
    name = unique_name()
    limiters = [StripeRateLimiter(database_url, RATE, name=name) for _ in range(3)]
    per_thread = 15
    granted = [0] * 6
    errors: list[BaseException] = []

    def run(slot: int, limiter: StripeRateLimiter, priority: Priority) -> None:
        try:
            for _ in range(per_thread):
                limiter.acquire(priority)
                granted[slot] += 1
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [
        threading.Thread(
            target=run,
            args=(i, limiters[i % 3], "interactive" if i % 2 else "background"),
        )
        for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert granted == [per_thread] * 6
    recorded = windows(database_url, name)
    assert_within_budget(recorded, limiters[0].budget)
    assert sum(recorded.values()) == 6 * per_thread
    # 90 requests at 25 a second cannot fit in fewer than 4 seconds.
    assert len({start // 1000 for start in recorded}) >= math.ceil(6 * per_thread / SLOTS)


CHILD = """
import sys, threading
from overtime.stripe_rate import StripeRateLimiter

url, name, rate, priority, threads, per_thread = sys.argv[1:7]
limiter = StripeRateLimiter(url, float(rate), name=name)
print("ready", flush=True)
sys.stdin.readline()  # "go": both processes start together
def run():
    for _ in range(int(per_thread)):
        limiter.acquire(priority)
workers = [threading.Thread(target=run) for _ in range(int(threads))]
for w in workers:
    w.start()
for w in workers:
    w.join()
print("granted", int(threads) * int(per_thread), flush=True)
"""


def test_two_processes_share_one_budget(database_url: str) -> None:
    """Two OS processes (a worker's background calls, an API's interactive ones) against
    one database: together they never pass a window's slots, and all requests pass."""
    name = unique_name()
    threads, per_thread = 2, 25
    sizes = [str(threads), str(per_thread)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, database_url, name, str(RATE), priority, *sizes],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for priority in ("background", "interactive")
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=120)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:  # pragma: no cover - only after a failure above
                child.kill()
                child.wait()
    assert [child.returncode for child in children] == [0, 0]
    assert [out.strip() for out in outputs] == [f"granted {threads * per_thread}"] * 2
    recorded = windows(database_url, name)
    assert_within_budget(recorded, window_budget(RATE))
    assert sum(recorded.values()) == 2 * threads * per_thread


# --- interactive before background --------------------------------------------------------


def test_interactive_takes_the_last_tenth_of_a_window_background_waits(
    database_url: str,
) -> None:
    limiter, clock = held_still(database_url)
    for _ in range(WINDOW_BACKGROUND_SLOTS):
        limiter.acquire("background")
    assert clock.sleeps == []  # all in the first window
    # The window is 90 % full: a customer's request still goes in it...
    for _ in range(WINDOW_SLOTS - WINDOW_BACKGROUND_SLOTS):
        limiter.acquire("interactive")
    assert clock.sleeps == []
    first = limiter.budget.window(T0).start_ms
    assert windows(database_url, limiter.name) == {first: WINDOW_SLOTS}
    # ...and a background request waits for the next window (100 ms on).
    limiter.acquire("background")
    assert len(clock.sleeps) == 1
    assert windows(database_url, limiter.name) == {first: WINDOW_SLOTS, first + 100: 1}


def test_background_waits_at_90_percent_while_interactive_passes(database_url: str) -> None:
    """The same from the other side: the background request that found the window at its
    share sleeps, the interactive one after it does not."""
    limiter, clock = held_still(database_url)
    for _ in range(WINDOW_BACKGROUND_SLOTS):
        limiter.acquire("background")
    limiter.acquire("interactive")
    assert clock.sleeps == []
    first = limiter.budget.window(T0).start_ms
    assert windows(database_url, limiter.name)[first] == WINDOW_BACKGROUND_SLOTS + 1
    # A full window makes interactive callers wait too.
    for _ in range(WINDOW_SLOTS - WINDOW_BACKGROUND_SLOTS - 1):
        limiter.acquire("interactive")
    limiter.acquire("interactive")
    assert len(clock.sleeps) == 1
    assert windows(database_url, limiter.name) == {first: WINDOW_SLOTS, first + 100: 1}


def test_a_backlog_is_spread_over_the_second(database_url: str) -> None:
    """A backlog's slots go 9 per 100 ms window, not a second's worth at once: 90
    background requests fill ten consecutive windows at their share each."""
    limiter, clock = held_still(database_url)
    start = limiter.budget.window(T0).start_ms
    for _ in range(10 * WINDOW_BACKGROUND_SLOTS):
        limiter.acquire("background")
    recorded = windows(database_url, limiter.name)
    assert recorded == {start + 100 * i: WINDOW_BACKGROUND_SLOTS for i in range(10)}
    assert len(clock.sleeps) == 9


def test_a_rate_below_one_per_second_grants_one_request_per_window(database_url: str) -> None:
    limiter, clock = held_still(database_url, rate=0.5)  # one request per 2 s
    for _ in range(3):
        limiter.acquire("background")
    recorded = windows(database_url, limiter.name)
    assert sorted(recorded.values()) == [1, 1, 1]
    starts = sorted(recorded)
    assert [b - a for a, b in itertools.pairwise(starts)] == [2000, 2000]
    assert len(clock.sleeps) == 2


# --- the database away --------------------------------------------------------------------


@pytest.mark.parametrize("url", UNREACHABLE_URLS)
def test_database_down_requests_still_pass_paced_locally(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    limiter = StripeRateLimiter(url, RATE, name=unique_name(), clock=clock, sleep=clock.sleep)
    local_slots = BACKGROUND_SLOTS // FALLBACK_PROCESSES  # 5
    with caplog.at_level(logging.WARNING, logger="overtime.stripe_rate"):
        for _ in range(2 * local_slots + 1):
            limiter.acquire("background")
    counts = limiter.local_counts()
    assert sorted(counts.values(), reverse=True) == [local_slots, local_slots, 1]
    assert len(counts) == 3  # three consecutive windows
    assert max(counts) - min(counts) == 2
    outage = [r for r in caplog.records if "database unreachable" in r.getMessage()]
    assert len(outage) == 1  # logged once per outage, not per request


def test_the_database_back_shares_the_budget_again(tmp_path: Path) -> None:
    """A database without the table (not migrated yet) counts as away; once it is there
    and the retry time has come, the windows are shared again."""
    url = f"sqlite:///{tmp_path / 'late.db'}"
    clock = FakeClock()
    limiter = StripeRateLimiter(url, RATE, name=unique_name(), clock=clock, sleep=clock.sleep)
    limiter.acquire("background")
    assert sum(limiter.local_counts().values()) == 1
    init_db(url)
    clock.now += DB_RETRY_SECONDS
    limiter.acquire("background")
    assert sum(limiter.local_counts().values()) == 1
    assert list(windows(url, limiter.name).values()) == [1]


# --- the one door: every request of the gateway ------------------------------------------


@pytest.fixture
def fake(fake_stripe: FakeStripe) -> Iterator[FakeStripe]:
    fake_stripe.clear_faults()
    fake_stripe.search_visibility_delay = 0.0
    yield fake_stripe
    fake_stripe.clear_faults()


def test_every_request_of_the_gateway_takes_a_slot_retries_included(
    database_url: str, fake: FakeStripe
) -> None:
    limiter = StripeRateLimiter(database_url, 1000.0, name=unique_name())
    gateway = StripeGateway(
        fake.secret_key,
        api_base=fake.api_base,
        max_network_retries=2,
        before_request=limiter.gate("background"),
    )
    fake.inject_faults(503, count=1, path_prefix="/v1/customers/search")
    before = len(fake.request_log)
    customer = gateway.ensure_customer(f"rate-{uuid.uuid4().hex[:8]}", "rate@example.test")
    gateway.attach_default_payment_method(customer, "pm_card_visa")
    made = fake.request_log[before:]
    assert any(r.injected for r in made)  # the SDK's retry was a request too
    assert sum(windows(database_url, limiter.name).values()) == len(made)


def test_a_limiter_outage_never_stops_stripe_calls(fake: FakeStripe) -> None:
    limiter = StripeRateLimiter(UNREACHABLE_URLS[0], 1000.0, name=unique_name())
    gateway = StripeGateway(
        fake.secret_key, api_base=fake.api_base, before_request=limiter.gate("interactive")
    )
    before = len(fake.request_log)
    customer = gateway.ensure_customer(f"rate-{uuid.uuid4().hex[:8]}", "down@example.test")
    assert customer.startswith("cus_")
    assert sum(limiter.local_counts().values()) == len(fake.request_log[before:])


def test_a_budget_that_is_not_a_finite_rate_is_refused_at_start_up() -> None:
    for rate in (float("inf"), float("nan"), 0, -1, 1e6):
        with pytest.raises(ValidationError, match="stripe_requests_per_second"):
            Settings(stripe_requests_per_second=rate)


def test_a_worker_runs_as_many_stripe_activities_as_the_budget_needs() -> None:
    # At Stripe's ~0.35 s per request: 100/s needs 35 in flight (capped at 32), the test
    # mode's 25/s 9, a tiny budget still a few.
    assert [stripe_activity_slots(r) for r in (0.5, 20, 25, 100, 1000)] == [4, 7, 9, 32, 32]
