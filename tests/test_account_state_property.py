"""A telephony backend against the billing state machine, checked by a reference model.

Hypothesis plays what a real telephony backend and the rest of Overtime do to one
account's :class:`PeriodState`, in any order: calls that ask and re-ask (with and without
request ids, retried), go silent and lapse while the clock moves, report honestly, over-
report, report twice or out of order, re-ask after their report, and reuse call ids (also
in a later period); the API abandoning request ids; extra minutes switched on and off,
limits raised and lowered, the payment method removed, invoices going overdue and paid,
all with calls in flight; continue-as-new (a JSON round trip through Temporal's data
converter), settled ids aging out of the exact memory (the test plays the ledger) and
period boundaries. After every step the state must agree with
:class:`tests.telephony_model.ModelAccount` on every grant, every billed second of every
call, every notice, service event, ledger row and closed period.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from temporalio.converter import DataConverter

from billing.account_state import RECENT_SECONDS, AbandonedRequest, PeriodState, UsageRecord
from billing.rules import ExtraMinutesSettings, PlanTerms, allowed_extra_seconds
from tests.telephony_model import ModelAccount

# The pure state machine: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

PLAN = PlanTerms("starter", 2900, included_minutes=2, extra_minute_price_cents=39)
CHUNK = 50
GRACE = 30
PERIOD = timedelta(hours=2)
START = datetime(2026, 11, 1, tzinfo=UTC)
CONVERTER = DataConverter.default.payload_converter


def round_trip(state: PeriodState) -> PeriodState:
    """What continue-as-new does to the state: JSON through Temporal's converter."""
    payload = CONVERTER.to_payload(state)
    assert payload is not None
    return CONVERTER.from_payload(payload, PeriodState)


def closes(state: PeriodState) -> list[tuple[datetime, int, int, int, int]]:
    return [
        (
            c.period_start,
            c.included_used_seconds,
            c.extra_used_seconds,
            c.excess_seconds,
            c.calls_recorded,
        )
        for c in state.outbox_closes
    ]


def limit(minutes: int) -> ExtraMinutesSettings:
    return ExtraMinutesSettings(True, limit_minutes=minutes)


class TelephonyMachine(RuleBasedStateMachine):
    # The focused variant (below) plays only calls, settings changes and short pauses.
    FOCUSED = False

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        initial = limit(3)
        self.state = PeriodState.open("acct", PLAN, initial, START, START + PERIOD)
        self.model = ModelAccount(
            included_seconds=PLAN.included_seconds,
            price_cents=PLAN.extra_minute_price_cents,
            chunk=CHUNK,
            grace=GRACE,
            period_start=START,
            period_end=START + PERIOD,
            enabled=True,
            allowed=allowed_extra_seconds(initial, PLAN),
        )
        self.model.highest_allowed = self.model.allowed
        self.payment_method = True
        self.state.payment_method_on_file = True
        # The ledger (rows the workflow flushed) and the delivered side effects.
        self.ledger: dict[str, UsageRecord] = {}
        self.delivered_notices: list[tuple[datetime, str]] = []
        self.disabled_causes: list[str | None] = []
        self.delivered_events: list[tuple[str, str | None]] = []
        self.delivered_settings = 0
        self.delivered_closes: list[tuple[datetime, int, int, int, int]] = []
        self.requests = (f"r{i}" for i in itertools.count())
        self.issued: list[str] = []  # request ids sent, processed or not
        self.abandoned: list[tuple[str, str, datetime]] = []  # (request id, its call, when)
        self.last_change_id: str | None = None
        self.change_ids = (f"chg{i}" for i in itertools.count())
        self.lookups = 0
        self.call_numbers = itertools.count()
        self.known: list[str] = []

    @initialize(
        enabled=st.sampled_from([True, True, False]),
        minutes=st.integers(1, 6),
        included_left=st.sampled_from([10, 60, 120]),
    )
    def open_account(self, enabled: bool, minutes: int, included_left: int) -> None:
        """Extra minutes on or off at first; part of the included minutes already used."""
        if not enabled:
            self._change(ExtraMinutesSettings(False))
        elif minutes != 3:
            self._change(limit(minutes))
        if included_left < PLAN.included_seconds:
            seconds = PLAN.included_seconds - included_left
            self.state.authorize("warm-up", self.now, chunk_seconds=seconds, grace_seconds=GRACE)
            self.model.chunk = seconds
            self.model.authorize("warm-up", self.now)
            self.model.chunk = CHUNK
            self.state.settle("warm-up", seconds, self.now)
            self.model.report("warm-up", seconds, self.now)

    # --- the workflow's glue: ledger look-ups ---------------------------------------------

    def _settled_before(self, call_id: str) -> bool:
        """What the workflow does before each request: ask the ledger if the state must."""
        state = self.state
        if call_id in self.model.settled and call_id not in self.ledger:
            # Not in the ledger yet: only the state knows it, so it must know it exactly.
            assert state.is_settled_here(call_id), f"{call_id} settled but forgotten"
        if call_id in self.model.settled and not state.is_settled_here(call_id):
            assert state.needs_ledger_lookup(call_id), f"{call_id}: settled, no look-up"
        if state.needs_ledger_lookup(call_id):
            self.lookups += 1
            event(f"ledger look-up: settled={call_id in self.ledger}")
            return call_id in self.ledger
        return False

    # --- telephony ------------------------------------------------------------------------

    def _ask(self, call: str, request: str, request_id: str | None = None) -> None:
        """An authorisation; "retry" repeats the call's latest request (same id)."""
        if request == "new":
            request_id = next(self.requests)
            self.issued.append(request_id)
        elif request == "retry":
            grant = self.model.running.get(call)
            request_id = grant.last_request if grant else None
            if request_id is None:
                return
        settled_before = self._settled_before(call)
        answer = self.state.authorize(
            call,
            self.now,
            chunk_seconds=CHUNK,
            grace_seconds=GRACE,
            request_id=request_id,
            settled_before=settled_before,
        )
        expected = self.model.authorize(call, self.now, request_id)
        got = (answer.allowed, answer.granted_seconds if answer.allowed else 0, answer.reason)
        assert got == (expected.allowed, expected.granted, expected.reason), (call, request)
        event(f"authorize: {expected.reason or 'granted'} {request}")

    def _report(self, call: str, fraction: float, extra: int) -> None:
        grant = self.model.running.get(call)
        seconds = int((grant.granted if grant else 0) * fraction) + extra
        settled_before = self._settled_before(call)
        settlement = self.state.settle(call, seconds, self.now, settled_before=settled_before)
        expected = self.model.report(call, seconds, self.now)
        if expected is None:
            assert settlement.duplicate and settlement.record is None, call
            return
        assert not settlement.duplicate and settlement.record is not None, call
        record = settlement.record
        got = (record.billed_included_seconds, record.billed_extra_seconds, record.excess_seconds)
        assert got == (expected.included, expected.extra, expected.excess), (call, seconds)
        assert record.late == expected.late
        event(f"report: extra={expected.extra > 0} excess={expected.excess > 0} late={record.late}")

    @rule(request=st.sampled_from(["none", "new"]))
    def call_starts(self, request: str) -> None:
        call = f"call-{next(self.call_numbers)}"
        self.known.append(call)
        self._ask(call, request)

    @precondition(lambda self: bool(self.model.running))
    @rule(data=st.data(), request=st.sampled_from(["none", "new", "new", "retry"]))
    def call_reasks(self, data: st.DataObject, request: str) -> None:
        """A running call asks again before (or, silent for a while, after) its grant ran
        out; or the API retries its latest request."""
        self._ask(data.draw(st.sampled_from(sorted(self.model.running))), request)

    @precondition(lambda self: bool(self.model.running))
    @rule(data=st.data(), fraction=st.sampled_from([0, 0.5, 1.0, 1.0]))
    def call_ends(self, data: st.DataObject, fraction: float) -> None:
        """A running call ends and reports what it talked (at most what it was granted)."""
        self._report(data.draw(st.sampled_from(sorted(self.model.running))), fraction, 0)

    @precondition(lambda self: not self.FOCUSED)
    @precondition(lambda self: bool(self.model.settled))
    @rule(data=st.data(), request=st.sampled_from(["none", "new"]))
    def settled_call_asks(self, data: st.DataObject, request: str) -> None:
        """A re-ask racing the call's own report, or the backend reusing a call id (maybe
        periods later): always call_ended, holding no room."""
        self._ask(
            data.draw(st.sampled_from(sorted(self.model.settled - {"warm-up"}) or ["warm-up"])),
            request,
        )

    @precondition(lambda self: not self.FOCUSED)
    @rule(
        data=st.data(),
        which=st.sampled_from(["known", "known", "never asked"]),
        fraction=st.sampled_from([0, 0.5, 1.0, 1.5]),
        extra=st.sampled_from([0, 1, 7, 40]),
    )
    def odd_report(self, data: st.DataObject, which: str, fraction: float, extra: int) -> None:
        """Over-reporting, a repeated (or reordered) report, a report for a call that
        never asked."""
        if which == "known" and self.known:
            call = data.draw(st.sampled_from(self.known))
        else:
            call = f"call-{next(self.call_numbers)}"
            self.known.append(call)
        self._report(call, fraction, extra)

    @precondition(lambda self: not self.FOCUSED)
    @precondition(lambda self: bool(self.model.running) or bool(self.known))
    @rule(data=st.data(), processed=st.booleans())
    def api_gives_up(self, data: st.DataObject, processed: bool) -> None:
        """The API gave up on a call's latest request (it answered 503, signalled the
        workflow), after the workflow granted it, or before the workflow saw it."""
        running = [c for c, g in self.model.running.items() if g.last_request is not None]
        if processed and running:
            call = data.draw(st.sampled_from(sorted(running)))
            request_id = self.model.running[call].last_request
            assert request_id is not None
        else:
            call = data.draw(st.sampled_from(sorted(self.model.running) or self.known))
            request_id = next(self.requests)
        self.abandoned.append((request_id, call, self.now))
        self.state.abandon([AbandonedRequest(call, request_id)], self.now, grace_seconds=GRACE)
        self.model.abandon([request_id])

    @precondition(lambda self: not self.FOCUSED)
    @precondition(lambda self: bool(self.abandoned))
    @rule(data=st.data())
    def abandoned_request_arrives(self, data: st.DataObject) -> None:
        """A request the API gave up on reaches the workflow (late, or retried): expired.
        (Within the hour abandoned ids are remembered; the API's deadline is seconds.)"""
        horizon = self.now - timedelta(seconds=RECENT_SECONDS)
        recent = [(r, c) for r, c, at in self.abandoned if at >= horizon]
        if recent:
            request_id, call = data.draw(st.sampled_from(recent))
            self._ask(call, "given", request_id)

    # --- settings and payment ----------------------------------------------------------------

    def _change(self, wanted: ExtraMinutesSettings) -> None:
        change_id = next(self.change_ids)
        self.last_change_id = change_id
        assert not self.state.already_applied(change_id)
        self.state.change_settings(wanted, self.now, actor="customer:x", change_id=change_id)
        assert self.state.already_applied(change_id)
        self.model.change_settings(wanted.enabled, allowed_extra_seconds(wanted, PLAN))

    @rule(
        change=st.sampled_from(
            ["limit", "limit", "off", "off", "retry", "card removed", "card added"]
        ),
        minutes=st.integers(1, 6),
    )
    def settings_change(self, change: str, minutes: int) -> None:
        """Extra minutes on, the limit raised or lowered, switched off, a retried change, the
        payment method removed or added: all with calls in flight."""
        if change == "limit" and self.payment_method:
            self._change(limit(minutes))
        elif change == "off" and self.state.settings.enabled:
            self._change(ExtraMinutesSettings(False))
        elif change == "retry" and self.last_change_id is not None:
            # The API retries a change whose answer was lost: the workflow applies it once.
            assert self.state.already_applied(self.last_change_id)
        elif change in ("card removed", "card added"):
            on_file = change == "card added"
            was_enabled = self.state.settings.enabled
            change_id = next(self.change_ids)
            disabled = self.state.set_payment_method(
                on_file, self.now, actor="customer:x", change_id=change_id
            )
            assert disabled == (was_enabled and not on_file)
            self.payment_method = on_file
            if disabled:
                self.last_change_id = change_id
                self.model.change_settings(False, 0)

    @precondition(lambda self: not self.FOCUSED)
    @rule(invoice=st.sampled_from(["inv-1", "inv-2"]), overdue=st.booleans())
    def invoice_overdue(self, invoice: str, overdue: bool) -> None:
        self.state.set_invoice_overdue(invoice, overdue, self.now)
        self.model.set_overdue(invoice, overdue)

    # --- time, hand-overs and delivery -----------------------------------------------------

    def _advance(self, seconds: int) -> None:
        target = self.now + timedelta(seconds=seconds)
        while target >= self.state.period_end:
            self._close_period()
        self.now = target

    def _close_period(self) -> None:
        end = self.state.period_end
        self.now = max(self.now, end)
        self.state = self.state.next_period(end, end + PERIOD, self.now)
        self.model.next_period(end + PERIOD)

    @rule(seconds=st.sampled_from([1, 5, 20, 29, 30, 31, 60, 90]))
    def time_passes(self, seconds: int) -> None:
        self._advance(seconds)

    @precondition(lambda self: not self.FOCUSED)
    @rule(
        what=st.sampled_from(
            ["continue-as-new", "period ends", "an hour passes", "ledger written", "delivered"]
        )
    )
    def hand_over(self, what: str) -> None:
        """Continue-as-new (a JSON round trip), the period boundary, an hour passing (settled
        ids leave the exact memory: only the filter and the ledger know them afterwards),
        the ledger rows written, the notices, events, settings history and closes sent."""
        if what == "continue-as-new":
            before = self.state
            self.state = round_trip(before)
            assert self.state == before
        elif what == "period ends":
            self._close_period()
        elif what == "an hour passes":
            self._advance(RECENT_SECONDS + 1)
        elif what == "ledger written":
            self._write_ledger()
        else:
            self._deliver()

    def _write_ledger(self) -> None:
        for record in self.state.unflushed:
            assert record.call_id not in self.ledger, f"{record.call_id} billed twice"
            self.ledger[record.call_id] = record
        self.state.unflushed.clear()

    def _deliver(self) -> None:
        state = self.state
        for notice in state.outbox_notices:
            assert notice.period_start is not None
            self.delivered_notices.append((notice.period_start, notice.key))
            if notice.kind == "extra_minutes_disabled":
                self.disabled_causes.append(notice.cause)
        self.delivered_events.extend((e.event, e.reason) for e in state.outbox_events)
        self.delivered_settings += len(state.outbox_settings)
        self.delivered_closes.extend(closes(state))
        for outbox in (
            state.outbox_notices,
            state.outbox_events,
            state.outbox_settings,
            state.outbox_closes,
        ):
            outbox.clear()

    # --- what must always hold ---------------------------------------------------------------

    @invariant()
    def totals_and_service_match_the_model(self) -> None:
        state, model = self.state, self.model
        assert (
            state.period_start,
            state.included_used_seconds,
            state.extra_used_seconds,
            state.excess_seconds,
            state.calls_recorded,
        ) == (model.period_start, model.included_used, model.extra_used, model.excess, model.calls)
        assert (state.accepting_calls, state.stop_reason) == (model.accepting, model.stop_reason)
        assert state.reserved_seconds(self.now) == model.held(self.now)

    @invariant()
    def every_ledger_row_matches_the_model(self) -> None:
        rows = [*self.ledger.values(), *self.state.unflushed]
        got = sorted(
            (
                r.call_id,
                r.reported_seconds,
                r.billed_included_seconds,
                r.billed_extra_seconds,
                r.excess_seconds,
                r.late,
                r.period_start,
            )
            for r in rows
        )
        assert got == sorted(
            (r.call_id, r.reported, r.included, r.extra, r.excess, r.late, r.period_start)
            for r in self.model.rows
        )
        assert len({r.call_id for r in rows}) == len(rows)  # a call id is billed once, ever

    @invariant()
    def every_notice_and_event_matches_the_model(self) -> None:
        state = self.state
        pending = [(n.period_start, n.key) for n in state.outbox_notices]
        assert self.delivered_notices + pending == self.model.notices
        events = [(e.event, e.reason) for e in state.outbox_events]
        assert self.delivered_events + events == self.model.events
        kinds = [e for e, _ in self.model.events]
        # Stopped and resumed alternate: one stopped per stop, one resumed per resume.
        assert all(a != b for a, b in itertools.pairwise(kinds))

    @invariant()
    def side_effects_survive_every_hand_over(self) -> None:
        state = self.state
        assert self.delivered_settings + len(state.outbox_settings) == self.model.settings_changes
        assert self.delivered_closes + closes(state) == self.model.closes
        assert set(self.disabled_causes) <= {"switched_off", "payment_method_removed"}

    @invariant()
    def never_billed_beyond_any_limit_in_force(self) -> None:
        assert self.state.extra_used_seconds <= self.model.highest_allowed


TelephonyMachine.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestTelephony = TelephonyMachine.TestCase


class FocusedTelephonyMachine(TelephonyMachine):
    """Calls asking, re-asking and ending while extra minutes are switched on and off and
    the limit moves: the interleavings a wide run reaches too rarely."""

    FOCUSED = True


FocusedTelephonyMachine.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestFocusedTelephony = FocusedTelephonyMachine.TestCase


# --- the rules the machine found broken, as plain examples ----------------------------------


def fresh(settings_: ExtraMinutesSettings, *, included_left: int) -> PeriodState:
    state = PeriodState.open("acct", PLAN, settings_, START, START + PERIOD)
    state.included_used_seconds = PLAN.included_seconds - included_left
    state.payment_method_on_file = True
    return state


def test_concurrent_grants_never_exceed_the_limit() -> None:
    """50 calls ask at once with 100 s of room: the grants add up to exactly the room."""
    state = fresh(limit(1), included_left=40)
    answers = [
        state.authorize(f"c{i}", START, chunk_seconds=300, grace_seconds=30) for i in range(50)
    ]
    granted = [a.granted_seconds for a in answers if a.allowed]
    assert sum(granted) == 40 + 60
    assert granted == [100]  # the first call gets all the room; the rest are refused
    assert {a.reason for a in answers if not a.allowed} == {"limit_reached"}


def test_switching_off_keeps_every_honest_grant_billable() -> None:
    """Call A is granted 100 included seconds while extra minutes are off; extra minutes
    go on (60 s) and call B is granted 60 s of them; they go off again. Both calls were
    granted within the limits in force, so both are billed in full: 100 included + 60
    extra. B reporting first takes included seconds (included first), and A must then
    still be billable from the extra seconds B was granted, not flagged as excess."""
    state = fresh(ExtraMinutesSettings(False), included_left=100)
    assert state.authorize("A", START, chunk_seconds=100, grace_seconds=30).granted_seconds == 100
    state.change_settings(limit(1), START)
    assert state.authorize("B", START, chunk_seconds=100, grace_seconds=30).granted_seconds == 60
    state.change_settings(ExtraMinutesSettings(False), START)
    state.settle("B", 60, START)
    a = state.settle("A", 100, START).record
    assert a is not None
    assert a.excess_seconds == 0, f"honest call A flagged {a.excess_seconds} s excess"
    assert (state.included_left, state.extra_used_seconds) == (0, 60)


def test_lowering_the_limit_keeps_every_honest_grant_billable() -> None:
    """The same with the limit lowered (to 15 s) instead of switched off."""
    state = fresh(ExtraMinutesSettings(False), included_left=100)
    state.authorize("A", START, chunk_seconds=100, grace_seconds=30)
    state.change_settings(limit(1), START)
    assert state.authorize("B", START, chunk_seconds=100, grace_seconds=30).granted_seconds == 60
    state.change_settings(ExtraMinutesSettings(True, limit_cents=10), START)  # 15 s
    state.settle("B", 60, START)
    a = state.settle("A", 100, START).record
    assert a is not None and a.excess_seconds == 0, a


def test_a_retried_request_grants_nothing_more_even_after_a_newer_one() -> None:
    """Same request id → same grant, nothing added, also when the retry of an older
    request arrives after a newer request of the same call (two API processes, a retry
    reordered behind the next re-ask)."""
    state = fresh(limit(3), included_left=100)
    first = state.authorize("X", START, chunk_seconds=10, grace_seconds=30, request_id="r1")
    state.authorize("X", START, chunk_seconds=10, grace_seconds=30, request_id="r2")
    again = state.authorize("X", START, chunk_seconds=10, grace_seconds=30, request_id="r1")
    assert (again.allowed, again.granted_seconds) == (first.allowed, first.granted_seconds)
    assert state.reservations["X"].granted_seconds == 20, "the retry of r1 was granted again"


def test_a_settled_id_is_final_after_an_hour_and_a_continue_as_new() -> None:
    """Out of the exact memory, the filter sends the workflow to the ledger."""
    state = fresh(limit(3), included_left=100)
    state.authorize("old", START, chunk_seconds=10, grace_seconds=30)
    state.settle("old", 10, START)
    state.unflushed.clear()  # written to the ledger
    later = START + timedelta(seconds=RECENT_SECONDS + 5)
    state.settle("other", 0, later)  # any settle forgets what is older than an hour
    state = round_trip(state)
    assert not state.is_settled_here("old")
    assert state.needs_ledger_lookup("old")
    refused = state.authorize("old", later, chunk_seconds=10, grace_seconds=30, settled_before=True)
    assert (refused.allowed, refused.reason) == (False, "call_ended")
    assert state.reserved_seconds(later) == 0
    assert state.settle("old", 10, later, settled_before=True).duplicate
