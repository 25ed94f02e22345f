"""Random call sequences against the billing state machine, checked by a simple model.

Hypothesis plays authorisations, re-asks, reports (honest, over-reporting, duplicate,
unknown), limit changes and the passing of time in any order; after every step the
state must agree with a reference model that only adds things up.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from billing.account_state import (
    INCLUDED_EXHAUSTED,
    LIMIT_REACHED,
    LIMIT_WARNING,
    PeriodState,
)
from billing.rules import ExtraMinutesSettings, PlanTerms, allowed_extra_seconds

PLAN = PlanTerms("starter", 2900, included_minutes=2, extra_minute_price_cents=39)
CHUNK = 50
GRACE = 30
START = datetime(2026, 11, 1, tzinfo=UTC)


class BillingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.state = PeriodState.open(
            "acct",
            PLAN,
            ExtraMinutesSettings(True, limit_minutes=3),
            START,
            START + timedelta(days=30),
        )
        # The reference model: what each call was granted, what was reported, totals.
        self.granted: Counter[str] = Counter()
        self.reported: dict[str, int] = {}
        self.highest_cap = allowed_extra_seconds(self.state.settings, PLAN)
        self.call_ids = [f"c{i}" for i in range(12)]
        self.notices: list[str] = []

    def _collect_notices(self) -> None:
        self.notices.extend(n.key for n in self.state.outbox_notices)
        self.state.outbox_notices.clear()
        self.state.outbox_events.clear()

    @rule(call=st.integers(0, 11))
    def authorize(self, call: int) -> None:
        call_id = self.call_ids[call]
        if call_id in self.reported:
            return  # a finished call does not ask again
        room_before = (
            self.state.included_left
            + self.state.extra_grantable
            - self.state.reserved_seconds(self.now)
        )
        answer = self.state.authorize(call_id, self.now, chunk_seconds=CHUNK, grace_seconds=GRACE)
        if answer.allowed:
            assert 0 < answer.granted_seconds <= min(CHUNK, room_before)
            self.granted[call_id] += answer.granted_seconds
        else:
            assert answer.reason in ("limit_reached", "included_minutes_exhausted")
        self._collect_notices()

    @rule(
        call=st.integers(0, 11),
        fraction=st.sampled_from([0, 0.5, 1.0, 1.5]),
        extra=st.integers(0, 20),
    )
    def report(self, call: int, fraction: float, extra: int) -> None:
        call_id = self.call_ids[call]
        seconds = int(self.granted[call_id] * fraction) + extra
        before = (self.state.included_used_seconds, self.state.extra_used_seconds)
        result = self.state.settle(call_id, seconds, self.now)
        if call_id in self.reported:
            assert result.duplicate
            assert (self.state.included_used_seconds, self.state.extra_used_seconds) == before
        else:
            assert not result.duplicate and result.record is not None
            record = result.record
            self.reported[call_id] = seconds
            billed = record.billed_included_seconds + record.billed_extra_seconds
            assert billed <= min(seconds, self.granted[call_id])
            assert billed + record.excess_seconds == seconds
            # Never past the limit in force, unless usage already stood above it.
            assert self.state.extra_used_seconds <= max(before[1], self.state.billing_cap_seconds)
        self._collect_notices()

    @rule(minutes=st.integers(1, 6))
    def change_limit(self, minutes: int) -> None:
        self.state.change_settings(ExtraMinutesSettings(True, limit_minutes=minutes), self.now)
        self.highest_cap = max(self.highest_cap, minutes * 60)
        self._collect_notices()

    @precondition(lambda self: self.state.settings.enabled)
    @rule()
    def disable(self) -> None:
        self.state.change_settings(ExtraMinutesSettings(False), self.now)
        self._collect_notices()

    @rule(seconds=st.integers(1, 120))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    # --- what must always hold ------------------------------------------------------------

    @invariant()
    def totals_match_the_model(self) -> None:
        state = self.state
        assert state.included_used_seconds <= PLAN.included_seconds
        assert state.included_used_seconds + state.extra_used_seconds + state.excess_seconds == sum(
            self.reported.values()
        )
        assert state.calls_recorded == len(self.reported)

    @invariant()
    def never_billed_beyond_any_limit_in_force(self) -> None:
        assert self.state.extra_used_seconds <= self.highest_cap

    @invariant()
    def crossing_90_percent_is_always_noticed(self) -> None:
        state = self.state
        allowed = state.extra_allowed_seconds
        if state.settings.enabled and allowed and state.extra_used_seconds * 100 >= allowed * 90:
            assert {f"limit_warning:{allowed}s", f"limit_reached:{allowed}s"} & set(
                state.notices_sent
            )
        if state.settings.enabled and allowed and state.extra_used_seconds >= allowed:
            assert f"limit_reached:{allowed}s" in state.notices_sent

    @invariant()
    def each_notice_at_most_once_per_limit(self) -> None:
        counts = Counter(self.notices)
        assert all(n == 1 for n in counts.values()), counts
        assert all(
            key.split(":")[0] in (LIMIT_WARNING, LIMIT_REACHED, INCLUDED_EXHAUSTED)
            for key in counts
        )

    @invariant()
    def accepting_calls_follows_the_rules(self) -> None:
        state = self.state
        exhausted = state.included_left == 0
        stopped = exhausted and (
            not state.settings.enabled or state.extra_used_seconds >= state.extra_allowed_seconds
        )
        assert state.accepting_calls is not stopped


BillingMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBilling = BillingMachine.TestCase


def test_concurrent_grants_never_exceed_the_limit() -> None:
    """50 calls ask at once with 100 s of room: the grants add up to exactly the room."""
    state = PeriodState.open(
        "acct", PLAN, ExtraMinutesSettings(True, limit_minutes=1), START, START + timedelta(days=1)
    )
    state.included_used_seconds = PLAN.included_seconds - 40
    answers = [
        state.authorize(f"c{i}", START, chunk_seconds=300, grace_seconds=30) for i in range(50)
    ]
    granted = [a.granted_seconds for a in answers if a.allowed]
    assert sum(granted) == 40 + 60
    assert granted == [100]  # the first call gets all the room; the rest are refused
    assert {a.reason for a in answers if not a.allowed} == {"limit_reached"}
