"""The live state of one account's billing period, as a pure state machine.

The account workflow owns one :class:`PeriodState` and calls its methods from its Update
handlers; everything here is deterministic (the caller passes ``now``), so the same code
runs inside the workflow sandbox, in hypothesis property tests and in replay.

Rules (see README "Billing rules"):

* A call consumes included seconds first, then extra seconds; extra seconds are billed
  per second and cost ``seconds × price / 60`` cents, rounded once, half up.
* Authorisation works with reservations, like a telecom credit-control server: each
  grant is the smaller of a chunk and what is left after the grants of running calls,
  so the billed total can never pass the limit, however many calls run at once.
* A call that reports more than it was granted is recorded; the excess is flagged and
  not billed.
* Notices (90 % warning, 100 % stop, included minutes exhausted) go out at most once per
  period and limit; service stops and resumes are emitted as events for the webhook.

Side effects are not performed here: they are appended to ``outbox`` (notices and service
events) and ``unflushed`` (ledger rows) for the workflow to hand to activities.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from billing.rules import (
    ExtraMinutesSettings,
    PlanTerms,
    allowed_extra_seconds,
    cost_cents,
    limit_as_cents,
    period_key,
)

WARNING_PERCENT = 90

# Notice kinds (also the values of the API's "kind" field).
LIMIT_WARNING = "limit_warning"
LIMIT_REACHED = "limit_reached"
INCLUDED_EXHAUSTED = "included_minutes_exhausted"
INVOICE = "invoice"
PAYMENT_FAILED = "payment_failed"
EXTRA_DISABLED = "extra_minutes_disabled"

# Stop reasons (the API's "stop_reason" and authorisation "reason").
REASON_LIMIT = "limit_reached"
REASON_INCLUDED = "included_minutes_exhausted"
REASON_PAYMENT = "payment_overdue"


@dataclass
class Reservation:
    """Seconds granted to a call that has not reported yet."""

    call_id: str
    granted_seconds: int
    first_granted_at: datetime
    expires_at: datetime
    # Authorised in an earlier period and still running when that period closed.
    carried: bool = False


@dataclass
class UsageRecord:
    """One ledger row: how a finished call was billed."""

    call_id: str
    reported_seconds: int
    granted_seconds: int
    billed_included_seconds: int
    billed_extra_seconds: int
    excess_seconds: int  # reported but not billed (beyond grant or limit); flagged
    late: bool  # authorised in an earlier, already closed period
    recorded_at: datetime


@dataclass
class Notice:
    """An email the customer gets; ``key`` makes it once-per-period-and-limit."""

    kind: str
    key: str
    limit_cents: int | None
    extra_seconds: int
    extra_cost_cents: int
    created_at: datetime
    # Invoice notices: the Stripe link, and whether the dunning run has ended.
    link: str | None = None
    final: bool = False


@dataclass
class ServiceEvent:
    """A change of whether calls are accepted, for the signed telephony webhook."""

    event: str  # "service.stopped" | "service.resumed"
    reason: str | None
    event_id: str
    created_at: datetime


@dataclass
class Authorization:
    allowed: bool
    granted_seconds: int = 0
    reason: str | None = None


@dataclass
class Settlement:
    recorded: bool
    duplicate: bool
    record: UsageRecord | None = None


@dataclass
class PeriodState:
    """Everything the workflow carries from one run to the next (continue-as-new)."""

    account_id: str
    plan: PlanTerms
    settings: ExtraMinutesSettings
    period_start: datetime
    period_end: datetime
    included_used_seconds: int = 0
    extra_used_seconds: int = 0
    excess_seconds: int = 0
    calls_recorded: int = 0
    reservations: dict[str, Reservation] = field(default_factory=dict)
    # Call ids settled in this run whose ledger rows may not be in the database yet;
    # older ones are looked up in the ledger (see AccountWorkflow).
    recent_call_ids: dict[str, int] = field(default_factory=dict)
    notices_sent: list[str] = field(default_factory=list)
    accepting_calls: bool = True
    stop_reason: str | None = None
    payment_overdue: bool = False
    payment_method_on_file: bool = False
    events_emitted: int = 0
    outbox_notices: list[Notice] = field(default_factory=list)
    outbox_events: list[ServiceEvent] = field(default_factory=list)
    unflushed: list[UsageRecord] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        account_id: str,
        plan: PlanTerms,
        settings: ExtraMinutesSettings,
        period_start: datetime,
        period_end: datetime,
    ) -> PeriodState:
        """A fresh period for a new account, its service status already computed."""
        state = cls(account_id, plan, settings, period_start, period_end)
        state._refresh_service(period_start, emit=False)
        return state

    # --- derived figures --------------------------------------------------------------

    @property
    def extra_allowed_seconds(self) -> int:
        return allowed_extra_seconds(self.settings, self.plan) if self.settings.enabled else 0

    @property
    def billing_cap_seconds(self) -> int:
        """What extra seconds may be billed at most: the limit, even after disabling.

        Disabling stops new grants, but seconds granted before it stay billable up to the
        limit that was in force; ``extra_allowed_seconds`` is what new grants may use.
        """
        return allowed_extra_seconds(self.settings, self.plan)

    @property
    def extra_cost_cents(self) -> int:
        return cost_cents(self.extra_used_seconds, self.plan.extra_minute_price_cents)

    @property
    def included_left(self) -> int:
        return max(0, self.plan.included_seconds - self.included_used_seconds)

    @property
    def extra_grantable(self) -> int:
        if not self.settings.enabled or self.payment_overdue:
            return 0
        return max(0, self.extra_allowed_seconds - self.extra_used_seconds)

    def reserved_seconds(self, now: datetime) -> int:
        return sum(r.granted_seconds for r in self.reservations.values() if r.expires_at > now)

    def _limit_key(self) -> str:
        return f"{self.extra_allowed_seconds}s"

    # --- telephony ------------------------------------------------------------------

    def authorize(
        self, call_id: str, now: datetime, *, chunk_seconds: int, grace_seconds: int
    ) -> Authorization:
        """Grant the call up to ``chunk_seconds`` more, from what is left unreserved."""
        room = self.included_left + self.extra_grantable - self.reserved_seconds(now)
        if not self.accepting_calls or room <= 0:
            reason = self.stop_reason or self._refusal_reason()
            self._note_refusal(reason, now)
            return Authorization(allowed=False, reason=reason)
        grant = min(chunk_seconds, room)
        reservation = self.reservations.get(call_id)
        if reservation is None or reservation.expires_at <= now:
            reservation = Reservation(
                call_id=call_id,
                granted_seconds=0 if reservation is None else reservation.granted_seconds,
                first_granted_at=now if reservation is None else reservation.first_granted_at,
                expires_at=now,
                carried=False if reservation is None else reservation.carried,
            )
            self.reservations[call_id] = reservation
        reservation.granted_seconds += grant
        reservation.expires_at = max(reservation.expires_at, now) + timedelta(
            seconds=grant + grace_seconds
        )
        return Authorization(allowed=True, granted_seconds=grant)

    def is_known_call(self, call_id: str) -> bool:
        return call_id in self.reservations or call_id in self.recent_call_ids

    def settle(self, call_id: str, seconds: int, now: datetime) -> Settlement:
        """Record a finished call: bill up to its grant, return the rest of the grant."""
        if call_id in self.recent_call_ids:
            return Settlement(recorded=True, duplicate=True)
        reservation = self.reservations.pop(call_id, None)
        granted = reservation.granted_seconds if reservation else 0
        billable = min(seconds, granted)
        included = min(billable, self.included_left)
        extra = min(billable - included, max(0, self.billing_cap_seconds - self.extra_used_seconds))
        record = UsageRecord(
            call_id=call_id,
            reported_seconds=seconds,
            granted_seconds=granted,
            billed_included_seconds=included,
            billed_extra_seconds=extra,
            excess_seconds=seconds - included - extra,
            late=bool(reservation and reservation.carried),
            recorded_at=now,
        )
        self.included_used_seconds += included
        self.extra_used_seconds += extra
        self.excess_seconds += record.excess_seconds
        self.calls_recorded += 1
        self.recent_call_ids[call_id] = seconds
        self.unflushed.append(record)
        self._after_usage_change(now)
        return Settlement(recorded=True, duplicate=False, record=record)

    # --- settings and payment -----------------------------------------------------------

    def change_settings(self, settings: ExtraMinutesSettings, now: datetime) -> None:
        """Apply a validated settings change; the new limit takes effect at once."""
        self.settings = settings
        if settings.enabled and self.extra_allowed_seconds > 0:
            # "Re-arm the 90 % warning when usage is below it": under the new limit the
            # warning may fire again, unless usage already stands at or above 90 %.
            if self._at_or_above_warning():
                self._mark_sent(LIMIT_WARNING)
        self._after_usage_change(now)

    def set_payment_overdue(self, overdue: bool, now: datetime) -> None:
        self.payment_overdue = overdue
        self._refresh_service(now)

    def set_payment_method(self, on_file: bool, now: datetime) -> bool:
        """Record whether a payment method is on file; True when this disabled extras.

        Without a payment method nothing could be charged, so removing the last one
        switches extra minutes off (what was used stays billable) and tells the customer.
        """
        self.payment_method_on_file = on_file
        if on_file or not self.settings.enabled:
            return False
        self.change_settings(ExtraMinutesSettings(enabled=False), now)
        self._notice(EXTRA_DISABLED, f"{self.events_emitted}", now)
        return True

    # --- period rollover -----------------------------------------------------------------

    def next_period(self, start: datetime, end: datetime, now: datetime) -> PeriodState:
        """The state the next period starts with: counters reset, running calls carried."""
        # Calls still running at the boundary keep their grants (their report is billed
        # in the new period, flagged late). Grants that lapsed during the closing period
        # are remembered one period more, so a late report still finds what it was
        # granted; they no longer hold any room.
        carried = {
            call_id: replace(r, carried=True)
            for call_id, r in self.reservations.items()
            if r.expires_at > self.period_start
        }
        fresh = PeriodState(
            account_id=self.account_id,
            plan=self.plan,
            settings=self.settings,
            period_start=start,
            period_end=end,
            reservations=carried,
            payment_overdue=self.payment_overdue,
            payment_method_on_file=self.payment_method_on_file,
            accepting_calls=self.accepting_calls,
            stop_reason=self.stop_reason,
            events_emitted=self.events_emitted,
        )
        fresh._refresh_service(now, emit=False)
        if fresh.accepting_calls != self.accepting_calls:
            fresh._emit_service_event(now)
        return fresh

    # --- internals -----------------------------------------------------------------------

    def _at_or_above_warning(self) -> bool:
        allowed = self.extra_allowed_seconds
        return allowed > 0 and self.extra_used_seconds * 100 >= allowed * WARNING_PERCENT

    def _refusal_reason(self) -> str:
        if self.payment_overdue and self.settings.enabled:
            return REASON_PAYMENT
        return REASON_LIMIT if self.settings.enabled else REASON_INCLUDED

    def _note_refusal(self, reason: str, now: datetime) -> None:
        # Included minutes are gone and extra minutes are off: tell the customer once,
        # suggesting extra minutes. A refusal only because running calls hold the rest
        # of the limit is not a stop: those calls may still hand seconds back.
        if reason == REASON_INCLUDED and self.included_left == 0:
            self._notice(INCLUDED_EXHAUSTED, "period", now)

    def _after_usage_change(self, now: datetime) -> None:
        if self.settings.enabled and self.extra_allowed_seconds > 0:
            reached = self.extra_used_seconds >= self.extra_allowed_seconds
            if reached:
                # Both thresholds crossed at once: one email (the stop), not two.
                self._mark_sent(LIMIT_WARNING)
                self._notice(LIMIT_REACHED, self._limit_key(), now)
            elif self._at_or_above_warning():
                self._notice(LIMIT_WARNING, self._limit_key(), now)
        elif self.included_left == 0:
            self._notice(INCLUDED_EXHAUSTED, "period", now)
        self._refresh_service(now)

    def _service_status(self) -> tuple[bool, str | None]:
        if self.included_left > 0:
            return True, None
        if not self.settings.enabled:
            return False, REASON_INCLUDED
        if self.payment_overdue:
            return False, REASON_PAYMENT
        if self.extra_used_seconds >= self.extra_allowed_seconds:
            return False, REASON_LIMIT
        return True, None

    def _refresh_service(self, now: datetime, *, emit: bool = True) -> None:
        accepting, reason = self._service_status()
        changed = accepting != self.accepting_calls or reason != self.stop_reason
        self.accepting_calls, self.stop_reason = accepting, reason
        if changed and emit:
            self._emit_service_event(now)

    def _emit_service_event(self, now: datetime) -> None:
        event = "service.resumed" if self.accepting_calls else "service.stopped"
        self.events_emitted += 1
        self.outbox_events.append(
            ServiceEvent(
                event=event,
                reason=self.stop_reason,
                event_id=f"{self.account_id}:{period_key(self.period_start)}:{self.events_emitted}",
                created_at=now,
            )
        )

    def _notice_key(self, kind: str, key: str) -> str:
        return f"{kind}:{key}"

    def _mark_sent(self, kind: str) -> None:
        key = self._notice_key(kind, self._limit_key())
        if key not in self.notices_sent:
            self.notices_sent.append(key)

    def _notice(self, kind: str, key: str, now: datetime) -> None:
        full_key = self._notice_key(kind, key)
        if full_key in self.notices_sent:
            return
        self.notices_sent.append(full_key)
        self.outbox_notices.append(
            Notice(
                kind=kind,
                key=full_key,
                limit_cents=limit_as_cents(self.settings, self.plan)
                if self.settings.enabled
                else None,
                extra_seconds=self.extra_used_seconds,
                extra_cost_cents=self.extra_cost_cents,
                created_at=now,
            )
        )
