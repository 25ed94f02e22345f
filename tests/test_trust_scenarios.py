"""Issue "Trust" end to end: HTTP API → account workflow → ledger, mail, webhooks.

Settled is final (across Updates, continue-as-new and periods), grants lapse exactly once
and give their room back (never at an honest call's expense), disabling keeps granted
seconds billable, notices and service events once, settings history one row per change,
suspension while any invoice is overdue.

The telephony helpers here behave like a real backend: every authorisation carries a
``request_id`` and is retried with it on 503 (the API answers 503 within its telephony
timeout when the workflow is slow), every report is retried until it is answered.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from devstack.mail_catcher import MailCatcher
from overtime.db import as_utc, session_scope
from overtime.models import Account, ClosedPeriod, SettingsChange, UsageEntry
from overtime.settings import Settings
from tests.conftest import (
    SHORT_PERIOD_SECONDS,
    Api,
    WebhookReceiver,
    WorkerControl,
    eventually,
    start_api,
    stop_api,
)
from workflows.types import InvoiceOverdue, invoice_workflow_id, workflow_id_for

STARTER_INCLUDED = 6000
TINY = "trust-tiny"  # a paid plan with one included minute (see tiny_plans below)
TINY_INCLUDED = 60


# --- a telephony backend -------------------------------------------------------------------


async def ask(api: Api, account: str, call_id: str, request_id: str | None = None) -> dict:
    """One authorisation, retried with the same request id while the API answers 503."""
    body = {
        "account_id": account,
        "call_id": call_id,
        "request_id": request_id or f"rq-{uuid.uuid4().hex[:16]}",
    }
    for _ in range(100):
        response = await api.telephony.post("/v1/calls/authorize", json=body)
        if response.status_code != 503:
            assert response.status_code == 200, response.text
            return response.json()
        await asyncio.sleep(0.1)
    raise AssertionError(f"authorize {call_id} unavailable for good")


async def report(api: Api, account: str, call_id: str, seconds: int) -> dict:
    body = {
        "account_id": account,
        "call_id": call_id,
        "seconds": seconds,
        "request_id": f"rp-{uuid.uuid4().hex[:16]}",
    }
    for _ in range(100):
        response = await api.telephony.post("/v1/calls/usage", json=body)
        if response.status_code != 503:
            assert response.status_code == 200, response.text
            return response.json()
        await asyncio.sleep(0.1)
    raise AssertionError(f"usage {call_id} unavailable for good")


async def talk(api: Api, account: str, call_id: str, seconds: int) -> int:
    """A whole call: ask and re-ask until it talked ``seconds`` or was cut off, report."""
    granted = 0
    while granted < seconds:
        answer = await ask(api, account, call_id)
        if not answer["allowed"]:
            break
        granted += answer["granted_seconds"]
    talked = min(seconds, granted)
    if granted:
        assert (await report(api, account, call_id, talked))["duplicate"] is False
    return talked


async def use_up_included(api: Api, account: str, included: int = STARTER_INCLUDED) -> None:
    chunk = api.settings.grant_chunk_seconds
    calls = [f"{account}-incl-{i}" for i in range(-(-included // chunk))]
    talked = await asyncio.gather(
        *(talk(api, account, c, min(chunk, included - i * chunk)) for i, c in enumerate(calls))
    )
    assert sum(talked) == included


# --- the ledger and the other tables -------------------------------------------------------


def db(api: Api) -> str:
    return api.settings.resolved_database_url()


def ledger_rows(api: Api, account: str) -> list[UsageEntry]:
    with session_scope(db(api)) as session:
        return list(session.exec(select(UsageEntry).where(UsageEntry.account_id == account)))


def ledger_row(api: Api, account: str, call_id: str) -> UsageEntry | None:
    return next((r for r in ledger_rows(api, account) if r.call_id == call_id), None)


def closed_periods(api: Api, account: str) -> list[ClosedPeriod]:
    with session_scope(db(api)) as session:
        return list(session.exec(select(ClosedPeriod).where(ClosedPeriod.account_id == account)))


async def ledger_equals_workflow(api: Api, account: str) -> dict[str, Any]:
    """The current period's ledger rows add up to the workflow's totals (once written)."""

    async def check() -> dict[str, Any]:
        state = await api.state(account)
        start = datetime.fromisoformat(state["period_start"])
        rows = [r for r in ledger_rows(api, account) if as_utc(r.period_start) == start]
        billed = sum(r.billed_included_seconds + r.billed_extra_seconds for r in rows)
        extra = sum(r.billed_extra_seconds for r in rows)
        assert (billed, extra) == (state["used_seconds"], state["extra_seconds"]), (rows, state)
        return state

    return await eventually(check)


# --- stacks with other knobs ---------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_plans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalog plus a paid plan with one included minute, so that tests with small
    grants reach the end of the included minutes in a few calls."""
    catalog = Path(__file__).parents[1] / "config" / "plans.toml"
    path = tmp_path_factory.mktemp("plans") / "plans.toml"
    path.write_text(
        catalog.read_text()
        + f'\n[[plan]]\nplan = "{TINY}"\nmonthly_fee_cents = 100\n'
        + "included_minutes = 1\nextra_minute_price_cents = 29\n"
    )
    return path


async def custom_api(settings: Settings, client: Client, **knobs: Any) -> AsyncIterator[Api]:
    server, task, api = await start_api(settings.model_copy(update=knobs), client)
    try:
        yield api
    finally:
        await stop_api(server, task, api)


@pytest.fixture(scope="session")
async def lapsing_api(
    settings: Settings, temporal_client: Client, worker: WorkerControl, tiny_plans: Path
) -> AsyncIterator[Api]:
    """2 s grants that lapse 3 s after they ran out."""
    async for api in custom_api(
        settings,
        temporal_client,
        grant_chunk_seconds=2,
        grant_grace_seconds=3,
        plans_file=tiny_plans,
    ):
        yield api


@pytest.fixture(scope="session")
async def one_grant_short_api(
    settings: Settings, temporal_client: Client, worker: WorkerControl
) -> AsyncIterator[Api]:
    """6 s periods and grants big enough for a business plan's included minutes at once."""
    async for api in custom_api(
        settings,
        temporal_client,
        period_seconds=SHORT_PERIOD_SECONDS,
        grant_chunk_seconds=40_000,
    ):
        yield api


async def fresh_period(api: Api, account: str) -> dict[str, Any]:
    """The state at the start of a period with at least 4 of its 6 seconds left."""

    async def fresh() -> dict[str, Any] | None:
        state = await api.state(account)
        end = datetime.fromisoformat(state["period_end"])
        left = (end - datetime.now(end.tzinfo)).total_seconds()
        return state if left > SHORT_PERIOD_SECONDS - 2 else None

    return await eventually(fresh, timeout=SHORT_PERIOD_SECONDS * 3, interval=0.05)


async def run_id(temporal_client: Client, account: str) -> str:
    description = await temporal_client.get_workflow_handle(workflow_id_for(account)).describe()
    assert description.run_id is not None
    return description.run_id


# --- (1) settled is final -----------------------------------------------------------------


async def test_settled_calls_stay_settled_across_continue_as_new(
    busy_api: Api, temporal_client: Client
) -> None:
    api = busy_api
    account = await api.create_account()
    reports = {"s1": 100, "s2": 300, "s3": 0}
    for call_id, seconds in reports.items():
        assert (await ask(api, account, call_id))["allowed"]
        assert (await report(api, account, call_id, seconds))["duplicate"] is False
    for call_id in reports:  # re-asks racing the report, or a reused id
        assert await ask(api, account, call_id) == {"allowed": False, "reason": "call_ended"}
    state = await api.state(account)
    assert (state["used_seconds"], state["reserved_seconds"]) == (400, 0)

    first_run = await run_id(temporal_client, account)
    for i in range(12):  # 24 Updates: past the 20 that trigger continue-as-new
        assert await talk(api, account, f"filler-{i}", 10) == 10

    async def continued() -> bool:
        return await run_id(temporal_client, account) != first_run

    await eventually(continued)

    for call_id, seconds in reports.items():
        assert await report(api, account, call_id, seconds) == {"recorded": True, "duplicate": True}
        assert await report(api, account, call_id, seconds + 50) == {
            "recorded": True,
            "duplicate": True,
        }
        assert await ask(api, account, call_id) == {"allowed": False, "reason": "call_ended"}
    state = await ledger_equals_workflow(api, account)
    assert (state["used_seconds"], state["reserved_seconds"]) == (400 + 120, 0)
    rows = ledger_rows(api, account)
    assert len(rows) == len({r.call_id for r in rows}) == 3 + 12


async def test_hand_overs_never_fail_a_telephony_request(
    busy_api: Api, temporal_client: Client
) -> None:
    """Traffic across several continue-as-new hand-overs (every 20 Updates): every
    request is answered 200 (or 503 and retried), never 500. An Update that reaches a run
    in the workflow task that continues it as new is failed by the server ("unexpected
    workflow task failure", FAILED_PRECONDITION); the API must retry it against the next
    run like a retry_later rejection."""
    api = busy_api
    account = await api.create_account()
    first_run = await run_id(temporal_client, account)
    statuses: list[int] = []

    async def caller(n: int) -> None:
        for i in range(8):
            for path, body in (
                ("/v1/calls/authorize", {"call_id": f"h{n}-{i}"}),
                ("/v1/calls/usage", {"call_id": f"h{n}-{i}", "seconds": 5}),
            ):
                body = {"account_id": account, "request_id": f"q-{uuid.uuid4().hex[:12]}", **body}
                for _ in range(50):
                    response = await api.telephony.post(path, json=body)
                    statuses.append(response.status_code)
                    if response.status_code != 503:
                        break
                    await asyncio.sleep(0.1)

    await asyncio.gather(*(caller(n) for n in range(6)))
    assert await run_id(temporal_client, account) != first_run
    assert set(statuses) <= {200, 503}, {s: statuses.count(s) for s in set(statuses)}
    state = await ledger_equals_workflow(api, account)
    assert state["used_seconds"] == 6 * 8 * 5


async def test_a_call_id_reused_in_the_next_period_is_refused(short_api: Api) -> None:
    api = short_api
    account = await api.create_account()
    first = await fresh_period(api, account)
    for call_id, seconds in (("p1", 90), ("p2", 300)):
        assert (await ask(api, account, call_id))["allowed"]
        await report(api, account, call_id, seconds)

    async def next_period() -> dict | None:
        state = await api.state(account)
        return state if state["period_start"] != first["period_start"] else None

    await eventually(next_period, timeout=SHORT_PERIOD_SECONDS * 3)
    for call_id in ("p1", "p2"):
        assert await ask(api, account, call_id) == {"allowed": False, "reason": "call_ended"}
        assert await report(api, account, call_id, 10) == {"recorded": True, "duplicate": True}
    state = await api.state(account)
    assert state["reserved_seconds"] == 0
    # Whatever period we are in now, nothing was billed after the first one.
    assert state["used_seconds"] == 0
    await ledger_equals_workflow(api, account)
    rows = await eventually(
        lambda: len(ledger_rows(api, account)) == 2 and ledger_rows(api, account)
    )
    assert {(r.call_id, r.billed_included_seconds) for r in rows} == {("p1", 90), ("p2", 300)}
    assert {as_utc(r.period_start) for r in rows} == {datetime.fromisoformat(first["period_start"])}
    closed = await eventually(lambda: closed_periods(api, account))
    first_close = [c for c in closed if as_utc(c.period_start) == rows[0].period_start]
    assert (first_close[0].included_used_seconds, first_close[0].calls_recorded) == (390, 2)


# --- (4) switching off with calls in flight -------------------------------------------------


async def test_seconds_granted_before_switching_off_stay_billable(api: Api) -> None:
    account = await api.create_account()
    assert (await api.enable(account, limit_minutes=10)).status_code == 200
    await use_up_included(api, account)
    assert (await ask(api, account, "a"))["granted_seconds"] == 300
    assert (await ask(api, account, "b"))["granted_seconds"] == 300
    lowered = await api.enable(account, limit_minutes=1)  # below what is in flight
    assert lowered.status_code == 200 and lowered.json()["extra_allowed_seconds"] == 60
    assert (await report(api, account, "a", 300))["duplicate"] is False
    off = await api.admin.put(f"/v1/accounts/{account}/extra-minutes", json={"enabled": False})
    assert off.status_code == 200
    assert (await report(api, account, "b", 250))["duplicate"] is False
    state = await ledger_equals_workflow(api, account)
    assert (state["extra_seconds"], state["enabled"]) == (550, False)
    assert state["extra_cost_cents"] == 358  # 550 s × 39 ct / 60 = 357.5 → 358
    for call_id, extra in (("a", 300), ("b", 250)):
        row = await eventually(lambda c=call_id: ledger_row(api, account, c))
        assert (row.billed_extra_seconds, row.excess_seconds) == (extra, 0)
    assert await ask(api, account, "c") == {
        "allowed": False,
        "reason": "included_minutes_exhausted",
    }


async def test_switching_off_keeps_an_included_grant_billable_when_others_report_first(
    api: Api,
) -> None:
    """A is granted the last 100 included seconds while extra minutes are off; they go on
    (1 minute) and B is granted that minute; they go off. B reports first and is billed
    included seconds first: A must still be billed its 100 seconds (60 of them extra, the
    minute B was granted), not flagged as excess. Found by the property test."""
    account = await api.create_account()
    assert await talk(api, account, "before", STARTER_INCLUDED - 100) == STARTER_INCLUDED - 100
    assert (await ask(api, account, "A"))["granted_seconds"] == 100
    assert (await api.enable(account, limit_minutes=1)).status_code == 200
    assert (await ask(api, account, "B"))["granted_seconds"] == 60
    off = await api.admin.put(f"/v1/accounts/{account}/extra-minutes", json={"enabled": False})
    assert off.status_code == 200
    await report(api, account, "B", 60)
    await report(api, account, "A", 100)
    row = await eventually(lambda: ledger_row(api, account, "A"))
    assert row.excess_seconds == 0, f"honest call A: {row.excess_seconds} s flagged as excess"
    state = await ledger_equals_workflow(api, account)
    assert (state["used_seconds"], state["extra_seconds"]) == (STARTER_INCLUDED + 60, 60)


# --- (5) a re-ask after the report holds no room ---------------------------------------------


async def test_reasks_after_the_report_hold_no_room(api: Api) -> None:
    account = await api.create_account()
    assert (await api.enable(account, limit_minutes=2)).status_code == 200
    await use_up_included(api, account)
    assert (await ask(api, account, "x"))["granted_seconds"] == 120
    await report(api, account, "x", 30)
    assert (await ask(api, account, "y"))["granted_seconds"] == 90
    await report(api, account, "y", 20)
    # Both re-ask, many times and all at once, while a new call asks: all the room the
    # two calls handed back (120 - 50 s) goes to the new call.
    answers = await asyncio.gather(
        *(ask(api, account, c) for c in ["x", "y"] * 5), ask(api, account, "z")
    )
    assert answers[:-1] == [{"allowed": False, "reason": "call_ended"}] * 10
    assert answers[-1] == {"allowed": True, "granted_seconds": 70}
    state = await api.state(account)
    assert state["reserved_seconds"] == 70
    await report(api, account, "z", 70)
    state = await ledger_equals_workflow(api, account)
    assert (state["extra_seconds"], state["reserved_seconds"]) == (120, 0)
    assert state["stop_reason"] == "limit_reached"


# --- (6) (7) (10) grants that lapse -----------------------------------------------------------


async def test_a_lapsed_grant_never_costs_the_honest_call(lapsing_api: Api) -> None:
    """4 s left; L1 and L2 are granted 2 s each and go silent; their grants lapse (2 s
    + 3 s grace) and H is granted 2 s of that room. H is billed in full; L1 reporting
    next still finds 2 s free and is billed them; L2 finds none: all its seconds are its
    excess, none are taken from H."""
    api = lapsing_api
    account = await api.create_account(TINY)
    await use_up_included(api, account, TINY_INCLUDED - 4)
    assert (await ask(api, account, "L1"))["granted_seconds"] == 2
    assert (await ask(api, account, "L2"))["granted_seconds"] == 2
    assert await ask(api, account, "H") == {
        "allowed": False,
        "reason": "included_minutes_exhausted",
    }
    await eventually(lambda: _reserved_is(api, account, 0), timeout=15, interval=0.2)
    assert (await ask(api, account, "H"))["granted_seconds"] == 2
    await report(api, account, "H", 2)
    await report(api, account, "L1", 2)
    await report(api, account, "L2", 2)
    state = await ledger_equals_workflow(api, account)
    assert state["used_seconds"] == TINY_INCLUDED
    rows = {c: await eventually(lambda c=c: ledger_row(api, account, c)) for c in ("H", "L1", "L2")}
    assert (rows["H"].billed_included_seconds, rows["H"].excess_seconds) == (2, 0)
    assert (rows["L1"].billed_included_seconds, rows["L1"].excess_seconds) == (2, 0)
    assert (rows["L2"].billed_included_seconds, rows["L2"].excess_seconds) == (0, 2)


async def _reserved_is(api: Api, account: str, seconds: int) -> bool:
    return (await api.state(account))["reserved_seconds"] == seconds


async def test_grace_counts_once_however_often_a_call_reasks(lapsing_api: Api) -> None:
    """Four re-asks at once: the grants run out 8 s later and the room is free 3 s after
    that (grace once: 11 s), not after 4 × (2 s + 3 s) = 20 s."""
    api = lapsing_api
    account = await api.create_account(TINY)
    assert (await api.state(account))["reserved_seconds"] == 0  # the workflow is up
    started = time.monotonic()
    for _ in range(4):
        assert (await ask(api, account, "talker"))["granted_seconds"] == 2
    assert (await api.state(account))["reserved_seconds"] == 8
    await asyncio.sleep(max(0.0, 7 - (time.monotonic() - started)))
    assert (await api.state(account))["reserved_seconds"] == 8  # not lapsed early
    await eventually(lambda: _reserved_is(api, account, 0), timeout=15, interval=0.2)
    elapsed = time.monotonic() - started
    assert 10 < elapsed < 14, f"lapsed after {elapsed:.1f} s, expected 11 s"


async def test_state_shows_reservations_as_of_the_query(lapsing_api: Api) -> None:
    """No Update after the grant: the query itself must see that it lapsed (5 s)."""
    api = lapsing_api
    account = await api.create_account(TINY)
    assert (await ask(api, account, "quiet"))["granted_seconds"] == 2
    assert (await api.state(account))["reserved_seconds"] == 2
    await asyncio.sleep(6.0)
    assert (await api.state(account))["reserved_seconds"] == 0


# --- (8) a period that costs 0 ct -----------------------------------------------------------


async def test_a_zero_cent_period_closes_without_an_invoice(
    one_grant_short_api: Api, temporal_client: Client
) -> None:
    """Business plan, one extra second: 1 s × 29 ct / 60 rounds to 0 ct, so no invoice."""
    api = one_grant_short_api
    account = await api.create_account("business")
    assert (await api.enable(account, limit_minutes=1)).status_code == 200
    business_included = 500 * 60

    state = await fresh_period(api, account)
    assert (await ask(api, account, "one-second-over"))["allowed"]
    await report(api, account, "one-second-over", business_included + 1)
    start = datetime.fromisoformat(state["period_start"])

    def closed() -> ClosedPeriod | None:
        rows = [c for c in closed_periods(api, account) if as_utc(c.period_start) == start]
        return rows[0] if rows else None

    close = await eventually(closed, timeout=SHORT_PERIOD_SECONDS * 3)
    assert (close.extra_used_seconds, close.extra_cost_cents) == (1, 0), close
    assert (close.included_used_seconds, close.excess_seconds) == (business_included, 0)
    await asyncio.sleep(1.0)
    invoices = await api.admin.get(f"/v1/accounts/{account}/invoices")
    assert invoices.status_code == 200 and invoices.json() == []
    from billing.rules import period_key

    handle = temporal_client.get_workflow_handle(invoice_workflow_id(account, period_key(start)))
    with pytest.raises(RPCError) as no_invoice:
        await handle.describe()
    assert no_invoice.value.status == RPCStatusCode.NOT_FOUND


# --- (9) concurrent settings changes ----------------------------------------------------------


async def test_concurrent_settings_changes_each_leave_one_history_row(api: Api) -> None:
    account = await api.create_account()
    assert (await api.add_payment_method(account)).status_code == 200
    wanted: list[dict[str, Any]] = [
        {"enabled": True, "limit_cents": 100 * (i + 1)} for i in range(6)
    ] + [{"enabled": False}, {"enabled": True, "limit_minutes": 7}, {"enabled": False}]
    responses = await asyncio.gather(
        *(api.admin.put(f"/v1/accounts/{account}/extra-minutes", json=w) for w in wanted)
    )
    assert [r.status_code for r in responses] == [200] * len(wanted)
    state = await api.state(account)

    def history() -> list[SettingsChange]:
        with session_scope(db(api)) as session:
            return list(
                session.exec(
                    select(SettingsChange).where(
                        SettingsChange.account_id == account,
                        SettingsChange.kind == "extra_minutes",  # not the payment method's
                    )
                )
            )

    rows = await eventually(lambda: len(history()) >= len(wanted) and history(), timeout=20)
    await asyncio.sleep(0.5)
    rows = history()
    assert len(rows) == len(wanted), [(r.new_enabled, r.new_limit_cents) for r in rows]
    assert len({r.change_id for r in rows}) == len(rows)
    # In the order they were applied, the rows chain from the first settings to the
    # workflow's final ones: each change starts where the one before ended.
    rows.sort(key=lambda r: r.id or 0)
    current = (False, None, None)
    for row in rows:
        assert (row.old_enabled, row.old_limit_cents, row.old_limit_minutes) == current
        current = (row.new_enabled, row.new_limit_cents, row.new_limit_minutes)
    final = (state["enabled"], state["limit_cents"], state["limit_minutes"])
    assert current == final
    applied = [
        {
            "enabled": r.new_enabled,
            "limit_cents": r.new_limit_cents,
            "limit_minutes": r.new_limit_minutes,
        }
        for r in rows
    ]
    as_sent = [
        {
            "enabled": w["enabled"],
            "limit_cents": w.get("limit_cents"),
            "limit_minutes": w.get("limit_minutes"),
        }
        for w in wanted
    ]
    assert sorted(map(str, applied)) == sorted(map(str, as_sent))

    def account_row() -> tuple[bool, int | None, int | None]:
        with session_scope(db(api)) as session:
            row = session.get(Account, account)
            assert row is not None
            return (row.extra_enabled, row.limit_cents, row.limit_minutes)

    await eventually(lambda: account_row() == final)


# --- (11) notices and service events once -----------------------------------------------------


async def test_one_stop_one_event_and_switching_off_never_suggests_extra_minutes(
    api: Api, mail: MailCatcher, webhook_receiver: WebhookReceiver
) -> None:
    account = await api.create_account(locale="en")
    email = f"{account}@example.com"
    assert (await api.enable(account, limit_minutes=1)).status_code == 200
    await use_up_included(api, account)
    assert await talk(api, account, "to-the-limit", 500) == 60
    assert (await api.state(account))["stop_reason"] == "limit_reached"

    def events() -> list[tuple[str, str | None]]:
        return [(e["type"], e.get("reason")) for e in webhook_receiver.for_account(account)]

    await eventually(lambda: events() == [("service.stopped", "limit_reached")])
    off = await api.admin.put(f"/v1/accounts/{account}/extra-minutes", json={"enabled": False})
    assert off.json()["stop_reason"] == "included_minutes_exhausted"
    for call_id in ("after-1", "after-2"):
        assert await ask(api, account, call_id) == {
            "allowed": False,
            "reason": "included_minutes_exhausted",
        }
    await eventually(lambda: len(mail.with_notice(email, "extra_minutes_disabled")) == 1)
    # The same stop, whatever its reason now: no second stopped event.
    await asyncio.sleep(1.0)
    assert events() == [("service.stopped", "limit_reached")]

    # On again (service resumes), off again: a new stop, a second switch-off email.
    assert (await api.enable(account, limit_minutes=5)).status_code == 200
    off = await api.admin.put(f"/v1/accounts/{account}/extra-minutes", json={"enabled": False})
    assert off.status_code == 200
    assert (await ask(api, account, "after-3"))["reason"] == "included_minutes_exhausted"
    await eventually(
        lambda: (
            [e for e, _ in events()] == ["service.stopped", "service.resumed", "service.stopped"]
        )
    )
    await eventually(lambda: len(mail.with_notice(email, "extra_minutes_disabled")) == 2)
    await asyncio.sleep(1.0)
    assert mail.with_notice(email, "included_minutes_exhausted") == []
    assert len(mail.with_notice(email, "limit_reached")) == 1
    kinds = [n["kind"] for n in await api.notifications(account)]
    assert kinds.count("extra_minutes_disabled") == 2 and "included_minutes_exhausted" not in kinds


async def test_suspended_while_any_invoice_is_overdue(
    api: Api, temporal_client: Client, webhook_receiver: WebhookReceiver
) -> None:
    account = await api.create_account()
    assert (await api.enable(account, limit_minutes=10)).status_code == 200
    await use_up_included(api, account)
    handle = temporal_client.get_workflow_handle(workflow_id_for(account))

    async def overdue(key: str, is_overdue: bool) -> None:
        await handle.signal("invoice_overdue", InvoiceOverdue(key, is_overdue))

    async def status() -> tuple[bool, str | None, bool]:
        state = await api.state(account)
        return state["payment_overdue"], state["stop_reason"], state["accepting_calls"]

    await overdue("invoice-a", True)
    await overdue("invoice-b", True)
    suspended = (True, "payment_overdue", False)
    await eventually(lambda: _equals(status(), suspended))
    assert (await ask(api, account, "while-overdue"))["reason"] == "payment_overdue"
    await overdue("invoice-a", False)  # one of the two paid
    await asyncio.sleep(0.5)
    assert await status() == suspended
    assert (await ask(api, account, "one-paid"))["reason"] == "payment_overdue"
    await overdue("invoice-a", False)  # a repeated "paid" changes nothing
    await overdue("invoice-b", False)
    await eventually(lambda: _equals(status(), (False, None, True)))
    assert (await ask(api, account, "all-paid"))["allowed"] is True
    await eventually(
        lambda: (
            [e["type"] for e in webhook_receiver.for_account(account)]
            == ["service.stopped", "service.resumed"]
        )
    )


async def _equals(value: Any, expected: Any) -> bool:
    return (await value) == expected
