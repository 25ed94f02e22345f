"""A reference model of one account's billing, written from the promises, not the code.

It knows nothing of :mod:`billing.account_state`'s internals: it keeps, per running call,
what was granted, how much of it still holds room and until when, and adds things up.
The property test (tests/test_account_state_property.py) and the HTTP model test
(tests/test_trust_model_http.py) drive ``PeriodState`` / the real workflow and this model
with the same steps and compare every grant, every billed second and every notice.

The rules it encodes (README "Billing rules", issue "Trust"):

* A grant is ``min(chunk, room)``, room = included left + extra left (0 while extra
  minutes are off or payment is overdue) - what live grants of running calls hold.
* A grant runs out at ``max(previous run-out, now) + grant`` (cumulative over re-asks) and
  lapses ``grace`` seconds later; from then on it holds no room. A re-ask after the lapse
  starts holding afresh.
* A report is billed from the call's live grant in full (the honest part); whatever it
  reports beyond that is billed from lapsed grant only as far as room is still free; the
  rest is the call's excess. Included seconds first. Never billed twice, never granted
  again, in any period.
* Notices: limit_warning at 90 %, limit_reached at 100 % (then no warning) once per
  period and limit; included_minutes_exhausted once per period while extra minutes are
  off (never after they were switched off in that period); extra_minutes_disabled on
  each switch-off. One service event per change of "accepting calls".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

WARNING = "limit_warning"
REACHED = "limit_reached"
INCLUDED = "included_minutes_exhausted"
DISABLED = "extra_minutes_disabled"


@dataclass
class ModelGrant:
    granted: int = 0  # everything the call was ever granted (in periods still remembered)
    holding: int = 0  # the part that holds room until ``lapses_at``
    runs_out: datetime | None = None
    lapses_at: datetime | None = None
    carried: bool = False
    last_request: str | None = None
    last_grant: int = 0

    def live(self, now: datetime) -> int:
        assert self.lapses_at is not None
        return self.holding if now < self.lapses_at else 0


@dataclass
class ModelRow:
    call_id: str
    reported: int
    included: int
    extra: int
    excess: int
    late: bool
    period_start: datetime


@dataclass
class Answer:
    allowed: bool
    granted: int = 0
    reason: str | None = None


@dataclass
class ModelAccount:
    included_seconds: int
    price_cents: int
    chunk: int
    grace: int
    period_start: datetime
    period_end: datetime
    enabled: bool = False
    allowed: int = 0  # extra seconds the limit buys (0 while off)
    overdue: set[str] = field(default_factory=set)
    included_used: int = 0
    extra_used: int = 0
    excess: int = 0
    calls: int = 0
    running: dict[str, ModelGrant] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)  # every call id ever settled
    abandoned: set[str] = field(default_factory=set)
    # Side effects as (period start, what) in the order they happen.
    notices: list[tuple[datetime, str]] = field(default_factory=list)
    events: list[tuple[str, str | None]] = field(default_factory=list)
    rows: list[ModelRow] = field(default_factory=list)
    closes: list[tuple[datetime, int, int, int, int]] = field(default_factory=list)
    sent_keys: set[str] = field(default_factory=set)
    settings_changes: int = 0
    highest_allowed: int = 0

    def __post_init__(self) -> None:
        self.accepting, self.stop_reason = self.status()

    # --- figures --------------------------------------------------------------------

    @property
    def included_left(self) -> int:
        return max(0, self.included_seconds - self.included_used)

    @property
    def extra_left(self) -> int:
        if not self.enabled or self.overdue:
            return 0
        return max(0, self.allowed - self.extra_used)

    def held(self, now: datetime, *, besides: str | None = None) -> int:
        return sum(g.live(now) for c, g in self.running.items() if c != besides)

    def room(self, now: datetime) -> int:
        return self.included_left + self.extra_left - self.held(now)

    def status(self) -> tuple[bool, str | None]:
        if self.included_left > 0:
            return True, None
        if not self.enabled:
            return False, INCLUDED
        if self.overdue:
            return False, "payment_overdue"
        if self.extra_used >= self.allowed:
            return False, REACHED
        return True, None

    # --- side effects ---------------------------------------------------------------

    def _notice(self, key: str) -> None:
        if key not in self.sent_keys:
            self.sent_keys.add(key)
            self.notices.append((self.period_start, key))

    def _usage_changed(self) -> None:
        if self.enabled:
            limit = f"{self.allowed}s"
            if self.extra_used >= self.allowed:
                self.sent_keys.add(f"{WARNING}:{limit}")  # the stop says it all
                self._notice(f"{REACHED}:{limit}")
            elif self.extra_used * 100 >= self.allowed * 90:
                self._notice(f"{WARNING}:{limit}")
        elif self.included_left == 0:
            self._notice(f"{INCLUDED}:period")
        self._service()

    def _service(self) -> None:
        accepting, reason = self.status()
        if accepting != self.accepting:
            self.events.append(("service.resumed" if accepting else "service.stopped", reason))
        self.accepting, self.stop_reason = accepting, reason

    # --- telephony ------------------------------------------------------------------

    def authorize(self, call_id: str, now: datetime, request_id: str | None = None) -> Answer:
        grant = self.running.get(call_id)
        if request_id is not None and request_id in self.abandoned:
            return Answer(False, reason="expired")
        if request_id is not None and grant is not None and grant.last_request == request_id:
            return Answer(True, grant.last_grant)
        if call_id in self.settled:
            return Answer(False, reason="call_ended")
        room = self.room(now)
        if not self.accepting or room <= 0:
            if self.stop_reason:
                reason = self.stop_reason
            elif self.enabled:
                reason = "payment_overdue" if self.overdue else REACHED
            else:
                reason = INCLUDED
            if reason == INCLUDED and self.included_left == 0:
                self._notice(f"{INCLUDED}:period")
            return Answer(False, reason=reason)
        amount = min(self.chunk, room)
        if grant is None:
            grant = self.running[call_id] = ModelGrant(runs_out=now, lapses_at=now)
        assert grant.runs_out is not None and grant.lapses_at is not None
        if now >= grant.lapses_at:
            grant.holding = 0  # lapsed: it starts holding afresh
        grant.runs_out = max(grant.runs_out, now) + timedelta(seconds=amount)
        grant.lapses_at = grant.runs_out + timedelta(seconds=self.grace)
        grant.granted += amount
        grant.holding += amount
        grant.last_request, grant.last_grant = request_id, amount
        return Answer(True, amount)

    def abandon(self, request_ids: list[str]) -> None:
        """The API gave up on these requests: the grant each made (a call's latest) is
        taken back, and they are refused if they arrive later."""
        self.abandoned.update(request_ids)
        for call_id, grant in list(self.running.items()):
            if grant.last_request is None or grant.last_request not in request_ids:
                continue
            amount = grant.last_grant
            grant.granted -= amount
            grant.holding = max(0, grant.holding - amount)
            grant.last_request, grant.last_grant = None, 0
            if grant.granted <= 0:
                del self.running[call_id]
                continue
            assert grant.runs_out is not None
            grant.runs_out -= timedelta(seconds=amount)
            grant.lapses_at = grant.runs_out + timedelta(seconds=self.grace)

    def report(self, call_id: str, seconds: int, now: datetime) -> ModelRow | None:
        """None: a duplicate (the call was settled before, in any period)."""
        if call_id in self.settled:
            return None
        grant = self.running.pop(call_id, None)
        if grant is None:
            billed, late = 0, False
        else:
            honest = min(seconds, grant.live(now))
            free = self.room(now) - honest  # the call's own grant is gone from the room
            billed = honest + min(seconds - honest, grant.granted - grant.live(now), max(0, free))
            late = grant.carried
        included = min(billed, self.included_left)
        row = ModelRow(
            call_id, seconds, included, billed - included, seconds - billed, late, self.period_start
        )
        self.included_used += row.included
        self.extra_used += row.extra
        self.excess += row.excess
        self.calls += 1
        self.settled.add(call_id)
        self.rows.append(row)
        self._usage_changed()
        return row

    # --- settings, payment, periods ---------------------------------------------------

    def change_settings(self, enabled: bool, allowed: int) -> None:
        was_enabled = self.enabled
        self.enabled, self.allowed = enabled, allowed if enabled else 0
        self.settings_changes += 1
        self.highest_allowed = max(self.highest_allowed, self.allowed)
        if enabled and self.extra_used * 100 >= self.allowed * 90:
            # Changing to a limit already 90 % used: no warning for it (the stop, if any,
            # still goes out).
            self.sent_keys.add(f"{WARNING}:{self.allowed}s")
        if was_enabled and not enabled:
            self.sent_keys.add(f"{INCLUDED}:period")  # it would suggest what was just refused
            self.notices.append((self.period_start, f"{DISABLED}:v{self.settings_changes}"))
        self._usage_changed()

    def set_overdue(self, invoice: str, overdue: bool) -> None:
        if overdue:
            self.overdue.add(invoice)
        else:
            self.overdue.discard(invoice)
        self._service()

    def next_period(self, end: datetime) -> None:
        self.closes.append(
            (self.period_start, self.included_used, self.extra_used, self.excess, self.calls)
        )
        closing_start = self.period_start
        # Running calls keep their grants (flagged late); grants that lapsed before the
        # closing period began are forgotten.
        for call_id, grant in list(self.running.items()):
            assert grant.lapses_at is not None
            if grant.lapses_at > closing_start:
                grant.carried = True
            else:
                del self.running[call_id]
        self.period_start, self.period_end = self.period_end, end
        self.included_used = self.extra_used = self.excess = self.calls = 0
        self.sent_keys = set()
        self._service()
