"""Stripe's request budget, shared by every process that talks to Stripe.

Stripe refuses requests above a per-second rate (100/s live, 25/s in test mode) for the
whole account, whichever process sends them. So the budget
(``Settings.stripe_requests_per_second``) is kept in the database every worker and API
process already shares: one row per time window (``stripe_rate_window``: limiter name,
window start → requests granted), and one request takes one slot with one atomic
statement::

    INSERT INTO stripe_rate_window (name, window_start_ms, used) VALUES (:name, :w, 1)
    ON CONFLICT (name, window_start_ms) DO UPDATE SET used = stripe_rate_window.used + 1
    WHERE stripe_rate_window.used < :cap
    RETURNING used

A row comes back: the slot is ours. None: the window is full, and the caller sleeps until
the next window starts and tries again. The statement is atomic on SQLite (≥ 3.35 for
``RETURNING``; writers are serialised) and on PostgreSQL (the conflicting row is locked and
its ``WHERE`` evaluated on the newest version), so however many processes ask at once, no
window grants more than its cap. The limiter is called by ``StripeGateway``'s HTTP client
before *every* request it sends, the SDK's own network retries included: it counts
requests, not activities (an invoicing activity makes 1 to 5 and ~3.5 on average, which
an activity-per-second throttle had to assume were all 5).

Windows. A second holds ``floor(rate)`` slots (a second cannot hold 2.5 requests, so a
fractional rate rounds down and no second ever exceeds the budget; below 1/s a period of
``1 / rate`` seconds holds one). Seconds are aligned on the epoch's, so every process
agrees on them, and each is cut into ``WINDOWS_PER_SECOND`` (10) windows with the slots
spread evenly over them (100/s: 10 per 100 ms; 25/s: 2, 3, 2, 3, …; below 10/s one slot
per window). The rows are the windows. Why not whole seconds: a window is fixed, not
sliding, and a backlog fills each window as soon as it opens; with 1 s windows a second's
slots could all go at its very end and the next second's at its start, so a 1 s stretch
straddling them saw nearly twice the budget (measured: 175 at 100/s). With 100 ms windows
any 1 s stretch covers at most 11 windows: the budget plus one window's cap (at most
110 at 100/s, 99 for the worker's share alone), and every calendar second at most the
budget.

Interactive before background. The month-end close queues thousands of requests; a
customer saving a card in the web app must not wait behind them. Background callers (the
worker's activities) may take a slot only while the window is below 90 % of its slots
(``BACKGROUND_SHARE``, spread over the windows as the slots are; at least one slot a
second is always theirs, so a tiny budget still invoices), interactive callers (the API)
up to 100 %. So the API always finds ~10 % of every second free however large the
backlog, and when it is idle the close only gives up that 10 %: the close's bound is
1 / 0.9 = 1.11× of what the raw rate allows, instead of an unbounded wait for the
customer. (A strict priority queue across processes would need the waiters in the
database too; a reserved share needs nothing but the cap.)

When the database is unreachable (or too slow: every wait is bounded, ``DB_WAIT_SECONDS``),
Stripe calls are not blocked: a limiter outage must never stop invoicing or a customer's
payment page. The process then paces itself locally, per second (a process's share is
too few requests to spread over windows), at ``1 / FALLBACK_PROCESSES`` of the second's
slots for its kind of caller (at least one request a second), logs the outage once, and
asks the database again every ``DB_RETRY_SECONDS``. How many processes share the budget
is exactly what it cannot know while the database is away; 4 is a small production
deployment (two workers, two API processes). More processes falling back at once may
exceed Stripe's rate: Stripe then answers 429, which the workflows' retry policies absorb
(the invoice steps are idempotent), so that costs time, not money.

Old windows are deleted now and then (each process, every ``PRUNE_EVERY_SECONDS``; rows
older than ``KEEP_SECONDS`` go), so the table stays a few thousand rows long and the last
minutes stay readable for an operator ("how full was each second?").

Clocks: windows come from each process's wall clock (``time.time``). NTP keeps hosts
within milliseconds of each other; a host whose clock is off by more moves its requests
into a neighbouring window, which may then take more than its share of that second.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from overtime.db import postgres_bounded_args

log = logging.getLogger(__name__)

Priority = Literal["interactive", "background"]

# Background callers may fill a window up to this share of its slots; the rest is kept
# for interactive ones (see the module docstring).
BACKGROUND_SHARE = 0.9
# Database down: each process paces itself at a second's slots ÷ this (an assumed
# process count).
FALLBACK_PROCESSES = 4
# Every database wait of the limiter (connect, pool checkout, statement, lock, SQLite's
# busy timeout) ends after this long; it then counts as an outage.
DB_WAIT_SECONDS = 5.0
# While the database is down, it is asked again this often (not on every request).
DB_RETRY_SECONDS = 5.0
PRUNE_EVERY_SECONDS = 60.0
KEEP_SECONDS = 600.0
# Sleepers wake up to this much after a window starts, spread at random, so a crowd of
# waiting threads does not hit the database in the same millisecond.
WAKE_SPREAD_SECONDS = 0.01
DEFAULT_NAME = "stripe"
# A second is cut into this many windows (fewer when the rate is below 10/s: one slot
# each), so its requests are spread over it (the module docstring says why).
WINDOWS_PER_SECOND = 10

_TAKE_SLOT = text(
    "INSERT INTO stripe_rate_window (name, window_start_ms, used) VALUES (:name, :w, 1) "
    "ON CONFLICT (name, window_start_ms) DO UPDATE SET used = stripe_rate_window.used + 1 "
    "WHERE stripe_rate_window.used < :cap "
    "RETURNING used"
)
_PRUNE = text("DELETE FROM stripe_rate_window WHERE name = :name AND window_start_ms < :before")


@dataclass(frozen=True)
class Window:
    """One window: its index (windows since the epoch), start (ms) and end (s), and
    how many requests it grants interactive callers (``cap``) and background ones."""

    index: int
    start_ms: int
    ends_at: float
    cap: int
    background_cap: int

    def cap_for(self, priority: Priority) -> int:
        return self.cap if priority == "interactive" else self.background_cap


@dataclass(frozen=True)
class WindowBudget:
    """How a request rate becomes windows. A *period* (1 s, or ``1 / rate`` below 1/s)
    grants ``slots`` requests (``background_slots`` of them to background callers), cut
    into ``len(caps)`` windows with ``caps[i]`` / ``background_caps[i]`` each; the caps
    of a period add up to its slots exactly."""

    period_seconds: float
    slots: int
    background_slots: int
    caps: tuple[int, ...]
    background_caps: tuple[int, ...]

    @property
    def window_seconds(self) -> float:
        return self.period_seconds / len(self.caps)

    def window(self, now: float) -> Window:
        per_period = len(self.caps)
        index = math.floor(now * per_period / self.period_seconds)
        position = index % per_period
        return Window(
            index=index,
            start_ms=round(index * self.window_seconds * 1000),
            ends_at=(index + 1) * self.window_seconds,
            cap=self.caps[position],
            background_cap=self.background_caps[position],
        )


def _spread(total: int, parts: int) -> list[int]:
    """``total`` cut into ``parts`` whole numbers as even as can be (they add up)."""
    return [total * (i + 1) // parts - total * i // parts for i in range(parts)]


def window_budget(
    requests_per_second: float, background_share: float = BACKGROUND_SHARE
) -> WindowBudget:
    """The windows for a rate: a second holds ``floor(rate)`` slots (below 1/s: one slot
    per ``1 / rate`` seconds), background callers ``background_share`` of them rounded
    down but at least one, and the second is cut into up to ``WINDOWS_PER_SECOND``
    windows, the slots spread evenly over them."""
    if requests_per_second <= 0:
        raise ValueError("the Stripe request rate must be positive")
    if requests_per_second >= 1:
        # The epsilon: 100.0 stays 100 slots even when the float is 99.99999999999999.
        period, slots = 1.0, math.floor(requests_per_second + 1e-9)
    else:
        period, slots = 1.0 / requests_per_second, 1
    background = max(1, math.floor(slots * background_share + 1e-9))
    windows = min(WINDOWS_PER_SECOND, slots)
    caps = _spread(slots, windows)
    # The interactive reserve spread the same way, taken off each window's cap.
    reserve = _spread(slots - background, windows)
    background_caps = [max(0, cap - kept) for cap, kept in zip(caps, reserve, strict=True)]
    return WindowBudget(
        period_seconds=period,
        slots=slots,
        background_slots=sum(background_caps),
        caps=tuple(caps),
        background_caps=tuple(background_caps),
    )


class StripeRateLimiter:
    """The shared Stripe budget; :meth:`acquire` before every request. Thread-safe.

    ``clock`` and ``sleep`` are the wall clock and ``time.sleep`` (tests pass their own
    to hold a window still); ``name`` separates budgets in one table (one per Stripe
    account; tests use their own).
    """

    def __init__(
        self,
        database_url: str,
        requests_per_second: float,
        *,
        name: str = DEFAULT_NAME,
        background_share: float = BACKGROUND_SHARE,
        fallback_processes: int = FALLBACK_PROCESSES,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.budget = window_budget(requests_per_second, background_share)
        self.name = name
        self._database_url = database_url
        self._fallback_processes = max(1, fallback_processes)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._db_retry_at = 0.0  # clock time; the database is asked again from then on
        self._outage_logged = False
        self._next_prune = 0.0
        # Database down: requests this process granted itself, per period index.
        self._local: dict[int, int] = {}

    def gate(self, priority: Priority) -> Callable[[], None]:
        """A no-argument callable taking one slot at ``priority``: what
        ``StripeGateway(before_request=...)`` calls."""

        def take_slot() -> None:
            self.acquire(priority)

        return take_slot

    def acquire(self, priority: Priority) -> None:
        """Return once this process may send one request to Stripe (sleeping through
        full windows); the slot is counted whatever the request then does."""
        while True:
            now = self._clock()
            window = self.budget.window(now)
            granted = (
                self._take_shared(window, window.cap_for(priority), now)
                if now >= self._db_retry_at
                else None
            )
            if granted is None:  # database down: pace this process on its own
                granted, ends_at = self._take_local(now, priority)
            else:
                ends_at = window.ends_at
            if granted:
                return
            self._sleep(max(0.0, ends_at - now) + random.uniform(0, WAKE_SPREAD_SECONDS))

    def local_counts(self) -> dict[int, int]:
        """Requests granted without the database, per period index (1 s at rates ≥ 1/s):
        the outage's record."""
        with self._lock:
            return dict(self._local)

    # --- shared (database) ------------------------------------------------------------

    def _take_shared(self, window: Window, cap: int, now: float) -> bool | None:
        """True: a slot is ours; False: the window is full; None: no database."""
        if cap == 0:  # this window has no slot for the caller's kind (small rates)
            return False
        try:
            with _engine(self._database_url).begin() as connection:
                used = connection.execute(
                    _TAKE_SLOT, {"name": self.name, "w": window.start_ms, "cap": cap}
                ).scalar_one_or_none()
        except SQLAlchemyError as err:
            self._database_failed(err, now)
            return None
        with self._lock:
            recovered, self._outage_logged = self._outage_logged, False
            prune = used is not None and now >= self._next_prune
            if prune:
                self._next_prune = now + PRUNE_EVERY_SECONDS
        if recovered:
            log.info("Stripe rate limiter: database reachable again, sharing the budget")
        if prune:
            self._prune(now)
        return used is not None

    def _database_failed(self, err: SQLAlchemyError, now: float) -> None:
        with self._lock:
            self._db_retry_at = now + DB_RETRY_SECONDS
            first, self._outage_logged = not self._outage_logged, True
        if first:
            log.warning(
                "Stripe rate limiter: database unreachable, pacing this process alone",
                extra={
                    "error": f"{type(err).__name__}: {err}"[:500],
                    "local_slots_per_period": self._local_cap("background"),
                    "period_seconds": self.budget.period_seconds,
                    "retry_seconds": DB_RETRY_SECONDS,
                },
            )

    def _prune(self, now: float) -> None:
        before = round((now - KEEP_SECONDS) * 1000)
        try:
            with _engine(self._database_url).begin() as connection:
                connection.execute(_PRUNE, {"name": self.name, "before": before})
        except SQLAlchemyError:  # the next prune deletes them; never worth a failed request
            log.debug("Stripe rate limiter: pruning old windows failed", exc_info=True)

    # --- local (database down) --------------------------------------------------------

    def _local_cap(self, priority: Priority) -> int:
        budget = self.budget
        slots = budget.slots if priority == "interactive" else budget.background_slots
        return max(1, slots // self._fallback_processes)

    def _take_local(self, now: float, priority: Priority) -> tuple[bool, float]:
        """Whether this process may send one more request in the current period on its
        own, and when the period ends. Whole periods: a process's share of a second is a
        few requests, too few to spread over its windows."""
        period = self.budget.period_seconds
        index = math.floor(now / period)
        with self._lock:
            used = self._local.get(index, 0)
            if used >= self._local_cap(priority):
                return False, (index + 1) * period
            self._local[index] = used + 1
            # An outage's record stays small: only the last periods are kept.
            for old in [key for key in self._local if key < index - 600]:
                del self._local[old]
            return True, (index + 1) * period


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    """The limiter's own pool, every wait bounded (``DB_WAIT_SECONDS``): the shared pool
    (``overtime.db.engine_for``) may wait as long as a migration or a report needs, and a
    Stripe call must not."""
    # One statement per slot, so a few connections serve many threads: they queue for a
    # checkout (no longer than a statement may wait) rather than open and close overflow
    # connections at every window start (measured on PostgreSQL with 16 overflow: 90 new
    # connections per second per process, each a forked server process).
    pool: dict[str, Any] = {"pool_size": 4, "max_overflow": 0, "pool_timeout": DB_WAIT_SECONDS}
    if url.startswith("sqlite"):
        # The file is in WAL mode already (overtime.db sets it; it persists in the file).
        return create_engine(
            url, connect_args={"check_same_thread": False, "timeout": DB_WAIT_SECONDS}, **pool
        )
    return create_engine(
        url,
        connect_args=postgres_bounded_args(DB_WAIT_SECONDS),
        pool_pre_ping=True,
        pool_recycle=300,
        **pool,
    )
