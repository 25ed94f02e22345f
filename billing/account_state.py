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
* Notices (warnings at the account's thresholds, 90 % unless it chose others; the 100 %
  stop; included minutes exhausted) go out at most once per period and limit; service stops
  and resumes are emitted as events for the webhook.
* A plan change applies at once: the new plan's included minutes count for the whole
  period; extra seconds already used keep the price they were used at (``earlier_prices``),
  so a EUR limit still bounds the total cost; a free plan switches extra minutes off.

* Settled is final: a call whose usage is recorded is never granted or billed again
  (``recent_settled`` exactly, every id ever in ``settled``, billing/settled.py).
* A grant lapses once, the grace period after it ran out; a lapsed grant holds no room,
  and what its call reports later is billed only from room still free.

Side effects are not performed here: they are appended to outboxes (``outbox_notices``,
``outbox_events``, ``unflushed`` ledger rows, ``outbox_settings``, ``outbox_closes``) that
the workflow drains through activities and carries over every hand-over.
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
from billing.settled import SettledFilter

WARNING_PERCENT = 90  # the default, and the only threshold before alert thresholds (v5)
MAX_ALERT_THRESHOLDS = 5

# Notice kinds (also the values of the API's "kind" field).
LIMIT_WARNING = "limit_warning"
LIMIT_REACHED = "limit_reached"
INCLUDED_EXHAUSTED = "included_minutes_exhausted"
INVOICE = "invoice"
PAYMENT_FAILED = "payment_failed"
EXTRA_DISABLED = "extra_minutes_disabled"
# Confirmations (v5): switched on, a payment method added or replaced, a plan change.
EXTRA_ENABLED = "extra_minutes_enabled"
PAYMENT_METHOD_CHANGED = "payment_method_changed"
PLAN_CHANGED = "plan_changed"
CONFIRMATIONS = frozenset({EXTRA_ENABLED, PAYMENT_METHOD_CHANGED, PLAN_CHANGED})

# Stop reasons (the API's "stop_reason" and authorisation "reason").
REASON_LIMIT = "limit_reached"
REASON_INCLUDED = "included_minutes_exhausted"
REASON_PAYMENT = "payment_overdue"


# Authorisation answers that record nothing; the API answers them with 503.
REASON_CALL_ENDED = "call_ended"  # the call is settled: it is never granted again
REASON_EXPIRED = "expired"  # the API gave up on this request before it was processed
REASON_UNAVAILABLE = "unavailable"  # the ledger could not be asked in time

# Why extra minutes were switched off (the extra_minutes_disabled email says which).
DISABLED_BY_CUSTOMER = "switched_off"
DISABLED_NO_PAYMENT_METHOD = "payment_method_removed"
DISABLED_BY_PLAN = "plan_downgraded"

# What a settings-history entry changed (the settings_change row's "kind").
CHANGED_EXTRA_MINUTES = "extra_minutes"
CHANGED_PLAN = "plan"
CHANGED_ALERTS = "alerts"
CHANGED_PAYMENT_METHOD = "payment_method"

# How long settled call ids and abandoned request ids are remembered exactly. Re-asks
# racing a report and retried reports arrive within minutes; older ids are still found
# through the settled-call filter and the ledger.
RECENT_SECONDS = 3600
# Settings change ids remembered, so an Update retried after its answer was lost (even
# into the next run) applies once.
RECENT_CHANGES = 64


@dataclass
class RequestGrant:
    seconds: int
    # The deadline (the API's clock) of the latest attempt of this request that was
    # answered: an abandon of an older attempt must not take the grant back.
    answered_deadline: datetime | None = None


@dataclass
class AbandonedRequest:
    """A telephony request the API answered 503: it stopped waiting at ``deadline``."""

    call_id: str
    request_id: str
    deadline: datetime | None = None


@dataclass
class Reservation:
    """Seconds granted to a call that has not reported yet.

    ``granted_seconds`` is everything the call was ever granted; the part that lapsed
    (``lapsed_seconds``) holds no room any more and is billable later only from room
    that is still free.
    """

    call_id: str
    granted_seconds: int
    first_granted_at: datetime
    # Runs out + the grace period: until then the grant holds its room.
    expires_at: datetime
    # Authorised in an earlier period and still running when that period closed.
    carried: bool = False
    # When the granted seconds run out if the call talks without pause.
    runs_out_at: datetime | None = None
    lapsed_seconds: int = 0
    # Request id -> what it granted: a retried request gets its grant again, and an
    # abandoned one gives exactly its own grant back.
    request_grants: dict[str, RequestGrant] = field(default_factory=dict)

    def live_seconds(self, now: datetime) -> int:
        """Seconds this grant still holds room for (none once it lapsed)."""
        return self.granted_seconds - self.lapsed_seconds if self.expires_at > now else 0


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
    # The period the call is billed in (rows can be written after it closed).
    period_start: datetime | None = None


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
    # The period the notice belongs to (it may be delivered after that period closed).
    period_start: datetime | None = None
    period_end: datetime | None = None
    # extra_minutes_disabled: DISABLED_BY_CUSTOMER, DISABLED_NO_PAYMENT_METHOD or
    # DISABLED_BY_PLAN.
    cause: str | None = None
    # limit_warning: the threshold crossed (percent of the limit); None on notices from
    # before thresholds, which were all 90 %.
    percent: int | None = None
    # The limit in the customer's own unit: minutes when it was set in minutes (then
    # ``limit_cents`` is their EUR equivalent), and the extra seconds it allows.
    limit_minutes: int | None = None
    extra_allowed_seconds: int | None = None
    # plan_changed: the plan now and before; payment_method_changed: the method.
    plan: str | None = None
    old_plan: str | None = None
    detail: str | None = None


@dataclass
class ServiceEvent:
    """A change of whether calls are accepted, for the signed telephony webhook."""

    event: str  # "service.stopped" | "service.resumed"
    reason: str | None
    event_id: str
    created_at: datetime
    period_start: datetime | None = None


@dataclass
class SettingsChangeEntry:
    """A settings change for the history table and the account row (written later).

    Every entry carries what is in force after it (settings, and since v5 plan and alert
    thresholds), so the account row's mirror can be written from the newest one alone.
    """

    change_id: str
    actor: str
    old: ExtraMinutesSettings
    new: ExtraMinutesSettings
    changed_at: datetime
    version: int
    kind: str = CHANGED_EXTRA_MINUTES
    detail: str | None = None  # plan, alerts, payment method: "old → new" in words
    reason: str | None = None  # an admin's reason, for the audit trail
    plan: str | None = None
    alert_percents: list[int] | None = None


@dataclass
class PricedUsage:
    """Extra seconds used this period under an earlier plan, priced at that plan's price
    (a plan change never reprices what was already used)."""

    plan: str
    seconds: int
    unit_price_cents: int
    cost_cents: int


@dataclass
class PeriodClose:
    """A closed period's totals, for the ``closed_period`` row (written later)."""

    account_id: str
    period_start: datetime
    period_end: datetime
    plan: str
    included_used_seconds: int
    extra_used_seconds: int
    extra_cost_cents: int
    excess_seconds: int
    calls_recorded: int
    extra_minute_price_cents: int
    limit_cents: int | None
    stopped_at_limit: bool


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
    """Everything the workflow carries from one run to the next (continue-as-new).

    Outboxes (notices, service events, ledger rows, settings history, closed periods)
    are carried too: what was not delivered when a run hands over is delivered by the
    next one, so no receiver being down ever holds up a call, a hand-over or a close.
    """

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
    notices_sent: list[str] = field(default_factory=list)
    accepting_calls: bool = True
    stop_reason: str | None = None
    payment_overdue: bool = False
    # Invoices (their workflow ids) whose dunning ended unpaid; suspended while any is.
    overdue_invoices: list[str] = field(default_factory=list)
    payment_method_on_file: bool = False
    events_emitted: int = 0
    settings_version: int = 0
    # Every call id ever settled (see billing.settled), and the recent ones exactly.
    settled: SettledFilter = field(default_factory=SettledFilter)
    recent_settled: dict[str, datetime] = field(default_factory=dict)
    recent_change_ids: list[str] = field(default_factory=list)
    # "<call id> <request id>" -> the deadline (API clock) of the abandoned attempt.
    abandoned_requests: dict[str, datetime] = field(default_factory=dict)
    # Appended to service event ids: a workflow re-created after its run was lost starts
    # counting events from 1 again, and its ids must not collide with delivered ones.
    event_salt: str = ""
    outbox_notices: list[Notice] = field(default_factory=list)
    outbox_events: list[ServiceEvent] = field(default_factory=list)
    unflushed: list[UsageRecord] = field(default_factory=list)
    outbox_settings: list[SettingsChangeEntry] = field(default_factory=list)
    outbox_closes: list[PeriodClose] = field(default_factory=list)
    # Warning thresholds in percent of the limit, ascending (the 100 % stop always counts).
    alert_percents: list[int] = field(default_factory=lambda: [WARNING_PERCENT])
    # Extra seconds of this period used under earlier plans (see PricedUsage); the rest of
    # ``extra_used_seconds`` is at today's plan's price.
    earlier_prices: list[PricedUsage] = field(default_factory=list)
    # Confirmation emails (switched on, payment method changed) and payment-method history
    # entries: set by workflows whose run records the v5 marker, so that replaying a run
    # recorded before them queues nothing it did not queue then.
    confirmations: bool = False
    # The once-per-period key of the included-minutes notice; a plan change that adds
    # included minutes gives it a new one.
    included_notice_key: str = "period"
    # The payment method on file, in words (v5): a repeated report of it confirms nothing.
    payment_method_label: str | None = None

    @classmethod
    def open(
        cls,
        account_id: str,
        plan: PlanTerms,
        settings: ExtraMinutesSettings,
        period_start: datetime,
        period_end: datetime,
        *,
        new_account: bool = False,
    ) -> PeriodState:
        """A fresh period, its service status already computed.

        Only a brand-new account has settled nothing yet; a workflow re-created for an
        existing account (its run was terminated or lost) loads its settled ids from the
        ledger before its filter counts as complete.
        """
        state = cls(account_id, plan, settings, period_start, period_end)
        state.settled = SettledFilter(complete=new_account)
        state._refresh_service(period_start, emit=False)
        return state

    # --- derived figures --------------------------------------------------------------

    @property
    def earlier_seconds(self) -> int:
        return sum(p.seconds for p in self.earlier_prices)

    @property
    def earlier_cost_cents(self) -> int:
        return sum(p.cost_cents for p in self.earlier_prices)

    @property
    def extra_allowed_seconds(self) -> int:
        if not self.settings.enabled:
            return 0
        if not self.earlier_prices or self.settings.limit_cents is None:
            # A minutes limit is minutes, whatever they cost; so is a period without
            # a plan change.
            return allowed_extra_seconds(self.settings, self.plan)
        # A EUR limit after a plan change: what was used before keeps its cost, and the
        # rest of the limit buys seconds at today's price (rounded down, so that their
        # cost, rounded once half up, never passes the rest).
        rest = ExtraMinutesSettings(
            enabled=True, limit_cents=max(0, self.settings.limit_cents - self.earlier_cost_cents)
        )
        return self.earlier_seconds + allowed_extra_seconds(rest, self.plan)

    @property
    def extra_cost_cents(self) -> int:
        now_priced = max(0, self.extra_used_seconds - self.earlier_seconds)
        return self.earlier_cost_cents + cost_cents(now_priced, self.plan.extra_minute_price_cents)

    def priced_usage(self) -> list[PricedUsage]:
        """This period's extra seconds by price: earlier plans first, then today's."""
        now_priced = max(0, self.extra_used_seconds - self.earlier_seconds)
        price = self.plan.extra_minute_price_cents
        current = PricedUsage(self.plan.plan, now_priced, price, cost_cents(now_priced, price))
        return [*self.earlier_prices, current] if now_priced else list(self.earlier_prices)

    @property
    def included_left(self) -> int:
        return max(0, self.plan.included_seconds - self.included_used_seconds)

    @property
    def extra_grantable(self) -> int:
        if not self.settings.enabled or self.payment_overdue:
            return 0
        return max(0, self.extra_allowed_seconds - self.extra_used_seconds)

    def reserved_seconds(self, now: datetime) -> int:
        return sum(r.live_seconds(now) for r in self.reservations.values())

    def _limit_key(self) -> str:
        return f"{self.extra_allowed_seconds}s"

    # --- settled calls ------------------------------------------------------------------

    def is_settled_here(self, call_id: str) -> bool:
        """Settled recently (or not yet in the ledger): known without asking the ledger."""
        return call_id in self.recent_settled

    def needs_ledger_lookup(self, call_id: str) -> bool:
        """True when only the ledger can say whether ``call_id`` was settled before.

        A running call (it has a reservation) was never settled: a settled call is never
        granted again. An id the filter has never seen was never settled either. Only
        the filter's "maybe" (an old id, or a rare false positive) costs a look-up.
        """
        if call_id in self.reservations or self.is_settled_here(call_id):
            return False
        return self.settled.might_contain(call_id)

    # --- telephony ------------------------------------------------------------------

    def authorize(
        self,
        call_id: str,
        now: datetime,
        *,
        chunk_seconds: int,
        grace_seconds: int,
        request_id: str | None = None,
        deadline: datetime | None = None,
        settled_before: bool = False,
    ) -> Authorization:
        """Grant the call up to ``chunk_seconds`` more, from what is left unreserved.

        ``settled_before``: the ledger says this call was settled (see
        :meth:`needs_ledger_lookup`). A settled call is refused ``call_ended`` and holds
        no room; a request already answered (same ``request_id``) gets the same grant.
        A request the API gave up on (:meth:`abandon`) grants nothing if it is processed
        afterwards; a new attempt with the same id (its ``deadline`` lies after the
        give-up) is answered afresh.
        """
        reservation = self.reservations.get(call_id)
        if request_id is not None:
            key = f"{call_id} {request_id}"
            abandoned_at = self.abandoned_requests.get(key)
            if abandoned_at is not None:
                if deadline is None or deadline <= abandoned_at:
                    return Authorization(allowed=False, reason=REASON_EXPIRED)
                del self.abandoned_requests[key]  # a newer attempt than the abandoned one
            if reservation is not None and request_id in reservation.request_grants:
                answered = reservation.request_grants[request_id]
                if deadline is not None and (
                    answered.answered_deadline is None or deadline > answered.answered_deadline
                ):
                    answered.answered_deadline = deadline
                return Authorization(allowed=True, granted_seconds=answered.seconds)
        if settled_before or self.is_settled_here(call_id):
            return Authorization(allowed=False, reason=REASON_CALL_ENDED)
        room = self.included_left + self.extra_grantable - self.reserved_seconds(now)
        if not self.accepting_calls or room <= 0:
            reason = self.stop_reason or self._refusal_reason()
            self._note_refusal(reason, now)
            return Authorization(allowed=False, reason=reason)
        grant = min(chunk_seconds, room)
        if reservation is None:
            reservation = Reservation(
                call_id=call_id,
                granted_seconds=0,
                first_granted_at=now,
                expires_at=now,
                runs_out_at=now,
            )
            self.reservations[call_id] = reservation
        elif reservation.expires_at <= now:
            # It lapsed: what it had no longer holds room; it asks again from now.
            reservation.lapsed_seconds = reservation.granted_seconds
        runs_out = reservation.runs_out_at or reservation.expires_at - timedelta(
            seconds=grace_seconds
        )
        reservation.runs_out_at = max(runs_out, now) + timedelta(seconds=grant)
        # The grace period counts once, from when the grant runs out: however often the
        # call re-asks, a call that went silent lapses exactly that long afterwards.
        reservation.expires_at = reservation.runs_out_at + timedelta(seconds=grace_seconds)
        reservation.granted_seconds += grant
        if request_id is not None:
            reservation.request_grants[request_id] = RequestGrant(grant, deadline)
        return Authorization(allowed=True, granted_seconds=grant)

    def abandon(
        self, requests: list[AbandonedRequest], now: datetime, *, grace_seconds: int
    ) -> None:
        """The API gave up on these requests: take back the grants they made.

        Deadlines are compared with deadlines only (both the API's clock): a grant that a
        later attempt of the same request got as its answer is not taken back.
        """
        for abandoned in requests:
            key = f"{abandoned.call_id} {abandoned.request_id}"
            at = abandoned.deadline or now
            self.abandoned_requests[key] = max(at, self.abandoned_requests.get(key, at))
            reservation = self.reservations.get(abandoned.call_id)
            if reservation is None:
                continue
            answered = reservation.request_grants.get(abandoned.request_id)
            if answered is None or (
                abandoned.deadline is not None
                and answered.answered_deadline is not None
                and answered.answered_deadline > abandoned.deadline
            ):
                continue
            del reservation.request_grants[abandoned.request_id]
            self._take_back(abandoned.call_id, reservation, answered.seconds, grace_seconds)
        self._forget_old(now)

    def _take_back(
        self, call_id: str, reservation: Reservation, grant: int, grace_seconds: int
    ) -> None:
        reservation.granted_seconds -= grant
        reservation.lapsed_seconds = min(reservation.lapsed_seconds, reservation.granted_seconds)
        if reservation.granted_seconds <= 0:
            del self.reservations[call_id]
            return
        assert reservation.runs_out_at is not None  # set by every grant since v3
        reservation.runs_out_at -= timedelta(seconds=grant)
        reservation.expires_at = reservation.runs_out_at + timedelta(seconds=grace_seconds)

    def settle(
        self, call_id: str, seconds: int, now: datetime, *, settled_before: bool = False
    ) -> Settlement:
        """Record a finished call: bill up to its grant, return the rest of the grant.

        Seconds of a grant that lapsed are billed only from room that is still free, so
        a call that went silent can never take what was since granted to another call;
        what cannot be billed is flagged as excess on this call.
        """
        if settled_before or self.is_settled_here(call_id):
            return Settlement(recorded=True, duplicate=True)
        reservation = self.reservations.pop(call_id, None)
        granted = reservation.granted_seconds if reservation else 0
        live = reservation.live_seconds(now) if reservation else 0
        from_live = min(seconds, live)
        # Free room for the lapsed part: what no running call holds, after this call's
        # live part (the settings now in force decide what extra room there is).
        free = self.included_left + self.extra_grantable - self.reserved_seconds(now) - from_live
        from_lapsed = min(seconds - from_live, granted - live, max(0, free))
        billable = from_live + from_lapsed
        # Included seconds first. The rest is extra, and within a limit by construction:
        # the live part was reserved under the limit in force when it was granted (which
        # is what keeps grants made before switching off or lowering the limit billable),
        # the lapsed part only comes from room free now. No cap per grant: included
        # seconds are pooled, so another call may have used the ones this grant counted on.
        included = min(billable, self.included_left)
        extra = billable - included
        record = UsageRecord(
            call_id=call_id,
            reported_seconds=seconds,
            granted_seconds=granted,
            billed_included_seconds=included,
            billed_extra_seconds=extra,
            excess_seconds=seconds - included - extra,
            late=bool(reservation and reservation.carried),
            recorded_at=now,
            period_start=self.period_start,
        )
        self.included_used_seconds += included
        self.extra_used_seconds += extra
        self.excess_seconds += record.excess_seconds
        self.calls_recorded += 1
        self.recent_settled[call_id] = now
        self.settled.add(call_id)
        self.unflushed.append(record)
        self._forget_old(now)
        self._after_usage_change(now)
        return Settlement(recorded=True, duplicate=False, record=record)

    def _forget_old(self, now: datetime) -> None:
        """Drop exact memories older than RECENT_SECONDS (oldest first: dicts keep order),
        except settled calls whose ledger row is not written yet: only we know them."""
        horizon = now - timedelta(seconds=RECENT_SECONDS)
        for memory in (self.recent_settled, self.abandoned_requests):
            if memory and next(iter(memory.values())) < horizon:
                keep = {r.call_id for r in self.unflushed} if memory is self.recent_settled else ()
                for key in [k for k, at in memory.items() if at < horizon and k not in keep]:
                    del memory[key]

    # --- settings and payment -----------------------------------------------------------

    def already_applied(self, change_id: str | None) -> bool:
        return change_id is not None and change_id in self.recent_change_ids

    def _remember_change(self, change_id: str | None) -> None:
        if change_id is not None:
            self.recent_change_ids = [*self.recent_change_ids, change_id][-RECENT_CHANGES:]

    def change_settings(
        self,
        settings: ExtraMinutesSettings,
        now: datetime,
        *,
        actor: str = "system",
        change_id: str | None = None,
        cause: str = DISABLED_BY_CUSTOMER,
        reason: str | None = None,
    ) -> None:
        """Apply a validated settings change; the new limit takes effect at once.

        Every change becomes one settings-history entry (``outbox_settings``). Switching
        extra minutes off confirms it by email; it never suggests switching them on.
        Switching them on is confirmed by email too (v5).
        """
        old = self.settings
        self.settings = settings
        self._record_change(
            CHANGED_EXTRA_MINUTES, now, actor=actor, change_id=change_id, old=old, reason=reason
        )
        if settings.enabled and self.extra_allowed_seconds > 0:
            # "Re-arm the warnings when usage is below them": under the new limit each may
            # fire again, unless usage already stands at or above it.
            self._mark_crossed_warnings()
        if old.enabled and not settings.enabled:
            suggestion = self._notice_key(INCLUDED_EXHAUSTED, self.included_notice_key)
            if suggestion not in self.notices_sent:
                self.notices_sent.append(suggestion)
            self._notice(EXTRA_DISABLED, f"v{self.settings_version}", now, cause=cause)
        elif settings.enabled and not old.enabled and self.confirmations:
            self._notice(EXTRA_ENABLED, f"v{self.settings_version}", now)
        self._after_usage_change(now)

    def change_alerts(
        self,
        percents: list[int],
        now: datetime,
        *,
        actor: str = "system",
        change_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """New warning thresholds (validated: see :func:`alerts_problem`).

        A threshold that usage already stands at is not announced now (the customer is
        looking at the figure): only thresholds still ahead notify.
        """
        old = self.alert_percents
        wanted = sorted(set(percents))
        if wanted == old:
            self._remember_change(change_id)
            return
        self.alert_percents = wanted
        self._record_change(
            CHANGED_ALERTS,
            now,
            actor=actor,
            change_id=change_id,
            reason=reason,
            detail=f"{_percent_list(old)} → {_percent_list(self.alert_percents)}",
        )
        self._mark_crossed_warnings()

    def change_plan(
        self,
        plan: PlanTerms,
        now: datetime,
        *,
        actor: str = "system",
        change_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Move the account to ``plan`` now (rules: module docstring, README "Plan changes").

        Extra seconds used so far keep their price; included minutes are the new plan's for
        the whole period; a plan without a monthly fee switches extra minutes off first
        (what was used stays billable at period end).
        """
        old = self.plan
        if old == plan:
            return
        if not plan.is_paid and self.settings.enabled:
            self.change_settings(
                ExtraMinutesSettings(enabled=False),
                now,
                actor=actor,
                cause=DISABLED_BY_PLAN,
                reason=reason,
            )
        now_priced = self.extra_used_seconds - self.earlier_seconds
        if now_priced > 0 and old.extra_minute_price_cents != plan.extra_minute_price_cents:
            self.earlier_prices = [
                *self.earlier_prices,
                PricedUsage(
                    old.plan,
                    now_priced,
                    old.extra_minute_price_cents,
                    cost_cents(now_priced, old.extra_minute_price_cents),
                ),
            ]
        self.plan = plan
        # Calls running now were granted their seconds under the old plan's pools and price.
        # Their grants are treated like lapsed ones: they hold no room, and what the calls
        # report is billed only from room the new plan has free (included first, then extra
        # within today's limit), the rest recorded as excess: never billed beyond a limit,
        # never billed as extra with extra minutes off. A re-ask is granted under the new plan.
        for reservation in self.reservations.values():
            reservation.lapsed_seconds = reservation.granted_seconds
        if plan.included_seconds > max(old.included_seconds, self.included_used_seconds):
            # More included minutes left than before: running out of them is news again
            # (a key of its own: the notification table keeps one notice per key and period).
            self.included_notice_key = f"v{self.settings_version + 1}"
        self._record_change(
            CHANGED_PLAN,
            now,
            actor=actor,
            change_id=change_id,
            reason=reason,
            detail=f"{old.plan} → {plan.plan}",
        )
        self._notice(PLAN_CHANGED, f"v{self.settings_version}", now, old_plan=old.plan)
        # A EUR limit buys a different number of seconds at the new price: warnings are
        # keyed by what the limit allows, so re-arm them as a limit change does.
        self._mark_crossed_warnings()
        self._after_usage_change(now)

    def _record_change(
        self,
        kind: str,
        now: datetime,
        *,
        actor: str,
        change_id: str | None,
        reason: str | None,
        old: ExtraMinutesSettings | None = None,
        detail: str | None = None,
    ) -> None:
        self.settings_version += 1
        change_id = change_id or f"{self.account_id}:settings:{self.settings_version}"
        self._remember_change(change_id)
        entry = SettingsChangeEntry(
            change_id,
            actor,
            old if old is not None else self.settings,
            self.settings,
            now,
            self.settings_version,
        )
        entry.kind, entry.detail, entry.reason = kind, detail, reason
        entry.plan, entry.alert_percents = self.plan.plan, list(self.alert_percents)
        self.outbox_settings.append(entry)

    def set_invoice_overdue(self, invoice_key: str, overdue: bool, now: datetime) -> None:
        keys = [k for k in self.overdue_invoices if k != invoice_key]
        self.overdue_invoices = [*keys, invoice_key] if overdue else keys
        self.payment_overdue = bool(self.overdue_invoices)
        self._refresh_service(now)

    def set_payment_method(
        self,
        on_file: bool,
        now: datetime,
        *,
        actor: str = "system",
        change_id: str | None = None,
        method_label: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Record whether a payment method is on file; True when this disabled extras.

        Without a payment method nothing could be charged, so removing the last one
        switches extra minutes off (what was used stays billable) and tells the customer.
        A change that names the method (``method_label``, v5) goes into the settings
        history, and adding or replacing one is confirmed by email.
        """
        had = self.payment_method_on_file
        self.payment_method_on_file = on_file
        if method_label is not None and on_file and method_label == self.payment_method_label:
            method_label = None  # the same method again (a retried attach): nothing new
        if on_file and method_label is not None:
            self.payment_method_label = method_label
        elif not on_file:
            self.payment_method_label = None
        if self.confirmations and (method_label is not None or (had and not on_file)):
            detail = method_label if on_file else "removed"
            self._record_change(
                CHANGED_PAYMENT_METHOD,
                now,
                actor=actor,
                change_id=change_id,
                reason=reason,
                detail=detail,
            )
            if on_file:
                self._notice(
                    PAYMENT_METHOD_CHANGED, f"v{self.settings_version}", now, detail=detail
                )
            # The switch-off below is an entry of its own, with an id of its own.
            change_id = f"{change_id}:extra-minutes" if change_id else None
        if on_file or not self.settings.enabled:
            return False
        self.change_settings(
            ExtraMinutesSettings(enabled=False),
            now,
            actor=actor,
            change_id=change_id,
            cause=DISABLED_NO_PAYMENT_METHOD,
            reason=reason,
        )
        return True

    # --- period rollover -----------------------------------------------------------------

    def closing_totals(self) -> PeriodClose:
        return PeriodClose(
            account_id=self.account_id,
            period_start=self.period_start,
            period_end=self.period_end,
            plan=self.plan.plan,
            included_used_seconds=self.included_used_seconds,
            extra_used_seconds=self.extra_used_seconds,
            extra_cost_cents=self.extra_cost_cents,
            excess_seconds=self.excess_seconds,
            calls_recorded=self.calls_recorded,
            extra_minute_price_cents=self.plan.extra_minute_price_cents,
            limit_cents=limit_as_cents(self.settings, self.plan) if self.settings.enabled else None,
            stopped_at_limit=self.stop_reason == REASON_LIMIT,
        )

    def next_period(self, start: datetime, end: datetime, now: datetime) -> PeriodState:
        """The state the next period starts with: counters reset, running calls carried,
        this period's totals and every undelivered side effect in the outboxes."""
        # Calls still running at the boundary keep their grants (their report is billed
        # in the new period, flagged late). Grants that lapsed during the closing period
        # are remembered one period more, so a late report still finds what it was
        # granted; they no longer hold any room.
        carried = {
            call_id: replace(r, carried=True)
            for call_id, r in self.reservations.items()
            if r.expires_at > self.period_start
        }
        fresh = replace(
            self,
            period_start=start,
            period_end=end,
            included_used_seconds=0,
            extra_used_seconds=0,
            excess_seconds=0,
            calls_recorded=0,
            reservations=carried,
            notices_sent=[],
            outbox_closes=[*self.outbox_closes, self.closing_totals()],
            earlier_prices=[],
            included_notice_key="period",
        )
        fresh._refresh_service(now)
        return fresh

    # --- internals -----------------------------------------------------------------------

    def _crossed_warnings(self) -> list[int]:
        """The thresholds usage stands at or above, ascending."""
        allowed = self.extra_allowed_seconds
        if allowed <= 0:
            return []
        limit_cents = self.settings.limit_cents
        if self.earlier_prices and limit_cents is not None:
            # Seconds at two prices: a percentage of a EUR limit is one of its euros.
            cost = self.extra_cost_cents
            return [p for p in self.alert_percents if cost * 100 >= limit_cents * p]
        return [p for p in self.alert_percents if self.extra_used_seconds * 100 >= allowed * p]

    def _warning_key(self, percent: int) -> str:
        # The 90 % key keeps its pre-threshold shape, so that a warning sent before an
        # upgrade is not sent again.
        limit = self._limit_key()
        return limit if percent == WARNING_PERCENT else f"{percent}%:{limit}"

    def _mark_crossed_warnings(self) -> None:
        for percent in self._crossed_warnings():
            self._mark_sent(LIMIT_WARNING, self._warning_key(percent))

    def _refusal_reason(self) -> str:
        if self.payment_overdue and self.settings.enabled:
            return REASON_PAYMENT
        return REASON_LIMIT if self.settings.enabled else REASON_INCLUDED

    def _note_refusal(self, reason: str, now: datetime) -> None:
        # Included minutes are gone and extra minutes are off: tell the customer once,
        # suggesting extra minutes. A refusal only because running calls hold the rest
        # of the limit is not a stop: those calls may still hand seconds back.
        if reason == REASON_INCLUDED and self.included_left == 0:
            self._notice(INCLUDED_EXHAUSTED, self.included_notice_key, now)

    def _after_usage_change(self, now: datetime) -> None:
        if self.settings.enabled and self.extra_allowed_seconds > 0:
            reached = self.extra_used_seconds >= self.extra_allowed_seconds
            crossed = self._crossed_warnings()
            if reached:
                # Thresholds crossed together with the stop: one email (the stop).
                self._mark_crossed_warnings()
                self._notice(LIMIT_REACHED, self._limit_key(), now)
            elif crossed:
                # Several thresholds crossed by one call: one email, for the highest.
                *passed, top = crossed
                for percent in passed:
                    self._mark_sent(LIMIT_WARNING, self._warning_key(percent))
                self._notice(LIMIT_WARNING, self._warning_key(top), now, percent=top)
        elif self.included_left == 0:
            self._notice(INCLUDED_EXHAUSTED, self.included_notice_key, now)
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
        # One service.stopped per stop and one service.resumed per resume: a stop whose
        # reason changes (limit reached, then switched off) is still the same stop.
        changed = accepting != self.accepting_calls
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
                event_id=f"{self.account_id}:{period_key(self.period_start)}:"
                f"{self.event_salt}{self.events_emitted}",
                created_at=now,
                period_start=self.period_start,
            )
        )

    def _notice_key(self, kind: str, key: str) -> str:
        return f"{kind}:{key}"

    def _mark_sent(self, kind: str, key: str | None = None) -> None:
        full_key = self._notice_key(kind, self._limit_key() if key is None else key)
        if full_key not in self.notices_sent:
            self.notices_sent.append(full_key)

    def _notice(
        self,
        kind: str,
        key: str,
        now: datetime,
        *,
        cause: str | None = None,
        percent: int | None = None,
        old_plan: str | None = None,
        detail: str | None = None,
    ) -> None:
        full_key = self._notice_key(kind, key)
        if full_key in self.notices_sent:
            return
        self.notices_sent.append(full_key)
        enabled = self.settings.enabled
        self.outbox_notices.append(
            Notice(
                kind=kind,
                key=full_key,
                limit_cents=limit_as_cents(self.settings, self.plan) if enabled else None,
                extra_seconds=self.extra_used_seconds,
                extra_cost_cents=self.extra_cost_cents,
                created_at=now,
                period_start=self.period_start,
                period_end=self.period_end,
                cause=cause,
                percent=percent,
                limit_minutes=self.settings.limit_minutes if enabled else None,
                extra_allowed_seconds=self.extra_allowed_seconds if enabled else None,
                plan=self.plan.plan,
                old_plan=old_plan,
                detail=detail,
            )
        )


def _percent_list(percents: list[int]) -> str:
    return ", ".join(f"{p} %" for p in percents) or "–"


def alerts_problem(percents: object) -> str | None:
    """Why ``percents`` cannot be an account's warning thresholds (None: they can).

    Up to five whole percentages between 1 and 99, each once; 100 % is the stop, which
    always notifies. No thresholds at all is allowed (only the stop then notifies).
    """
    if not isinstance(percents, list):
        return "thresholds must be a list of whole percentages"
    if len(percents) > MAX_ALERT_THRESHOLDS:
        return f"at most {MAX_ALERT_THRESHOLDS} thresholds"
    for p in percents:
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 99:
            return "each threshold is a whole percentage from 1 to 99 (100 % always notifies)"
    if len(set(percents)) != len(percents):
        return "each threshold only once"
    return None
