"""The billing rules end to end: HTTP API → Temporal workflow → database, SMTP, webhooks.

Plans come from config/plans.toml: "starter" includes 100 minutes (6,000 s) and bills
extra minutes at 39 cents; grants are 300 s chunks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlmodel import select

from billing.account_state import CONFIRMATIONS
from devstack.mail_catcher import MailCatcher
from overtime.db import session_scope
from overtime.models import SettingsChange, UsageEntry
from tests.conftest import Api, WebhookReceiver, eventually

STARTER_INCLUDED = 6000


async def use_up_included(api: Api, account: str) -> None:
    assert await api.call(account, f"{account}-included", STARTER_INCLUDED) == STARTER_INCLUDED


def ledger_rows(api: Api, account: str) -> list[UsageEntry]:
    with session_scope(api.settings.resolved_database_url()) as session:
        return list(session.exec(select(UsageEntry).where(UsageEntry.account_id == account)))


async def notice_kinds(api: Api, account: str, *, confirmations: bool = False) -> list[str]:
    """The account's notices in the order sent; without the confirmations unless asked."""
    kinds = [n["kind"] for n in await api.notifications(account)]
    return kinds if confirmations else [k for k in kinds if k not in CONFIRMATIONS]


async def test_included_minutes_first_then_extra(api: Api) -> None:
    account = await api.create_account()
    assert (await api.enable(account, limit_cents=1000)).status_code == 200
    assert await api.call(account, "a", 5940) == 5940
    assert await api.call(account, "b", 120) == 120  # 60 s included + 60 s extra
    state = await api.state(account)
    assert state["used_seconds"] == 6060
    assert state["extra_seconds"] == 60
    assert state["extra_cost_cents"] == 39
    await eventually(lambda: len(ledger_rows(api, account)) == 2)
    by_call = {row.call_id: row for row in ledger_rows(api, account)}
    assert (by_call["b"].billed_included_seconds, by_call["b"].billed_extra_seconds) == (60, 60)


async def test_warning_once_then_stop_exactly_at_the_limit(
    api: Api, mail: MailCatcher, webhook_receiver: WebhookReceiver
) -> None:
    account = await api.create_account(locale="en")
    email = f"{account}@example.com"
    assert (await api.enable(account, limit_minutes=10)).status_code == 200
    await use_up_included(api, account)

    assert await api.call(account, "x1", 530) == 530  # 88 %: no warning yet
    assert await api.call(account, "x2", 20) == 20  # 91.7 %: the warning
    assert await api.call(account, "x3", 5) == 5  # still above 90 %: no second warning
    await eventually(lambda: len(mail.with_notice(email, "limit_warning")) == 1)

    assert await api.call(account, "x4", 300) == 45  # cut off exactly at the limit
    state = await api.state(account)
    assert state["extra_seconds"] == 600 == state["extra_allowed_seconds"]
    assert state["accepting_calls"] is False
    assert state["stop_reason"] == "limit_reached"
    assert await api.authorize(account, "x5") == {"allowed": False, "reason": "limit_reached"}

    await eventually(lambda: len(mail.with_notice(email, "limit_reached")) == 1)
    await eventually(
        lambda: [e["type"] for e in webhook_receiver.for_account(account)] == ["service.stopped"]
    )
    assert webhook_receiver.for_account(account)[0]["reason"] == "limit_reached"
    assert webhook_receiver.rejected == 0
    await asyncio.sleep(0.5)  # nothing else arrives later
    assert len(mail.with_notice(email, "limit_warning")) == 1
    assert len(mail.with_notice(email, "limit_reached")) == 1
    assert await notice_kinds(api, account, confirmations=True) == [
        "payment_method_changed",
        "extra_minutes_enabled",
        "limit_warning",
        "limit_reached",
    ]

    warning = mail.with_notice(email, "limit_warning")[0]
    assert "90 %" in warning.subject
    # At the warning 550 extra seconds were billed: 550 × 39 ct / 60 = 357.5 → 358 ct.
    assert "€3.58 of €3.90" in warning.text()
    assert "<html" in warning.html()


async def test_fifty_simultaneous_calls_never_pass_the_limit(api: Api, mail: MailCatcher) -> None:
    account = await api.create_account()
    assert (await api.enable(account, limit_minutes=5)).status_code == 200
    await use_up_included(api, account)

    talked = await asyncio.gather(*(api.call(account, f"burst-{i}", 120) for i in range(50)))

    state = await api.state(account)
    assert sum(talked) == state["extra_seconds"] <= 300
    assert state["reserved_seconds"] == 0  # every grant settled, the unused rest returned
    # What the burst's calls handed back is there for the next call, to the second.
    rest = 300 - state["extra_seconds"]
    assert await api.call(account, "after-burst", 1000) == rest
    state = await api.state(account)
    assert state["extra_seconds"] == 300
    assert state["accepting_calls"] is False
    await eventually(lambda: len(mail.with_notice(f"{account}@example.com", "limit_reached")) == 1)


async def test_fifty_simultaneous_authorisations_all_answered(api: Api) -> None:
    account = await api.create_account()
    responses = await asyncio.gather(
        *(
            api.telephony.post(
                "/v1/calls/authorize", json={"account_id": account, "call_id": f"c{i}"}
            )
            for i in range(50)
        )
    )
    assert [r.status_code for r in responses] == [200] * 50
    grants = [r.json().get("granted_seconds", 0) for r in responses]
    assert sum(grants) == STARTER_INCLUDED  # 20 full chunks: 6,000 s of included minutes
    assert sorted(grants, reverse=True)[:20] == [300] * 20
    refused = [r.json() for r in responses if not r.json()["allowed"]]
    assert len(refused) == 30
    assert {r["reason"] for r in refused} == {"included_minutes_exhausted"}
    assert (await api.state(account))["reserved_seconds"] == STARTER_INCLUDED


async def test_raising_the_limit_resumes_and_rearms_the_warning(
    api: Api, mail: MailCatcher, webhook_receiver: WebhookReceiver
) -> None:
    account = await api.create_account()
    email = f"{account}@example.com"
    assert (await api.enable(account, limit_minutes=2)).status_code == 200
    await use_up_included(api, account)
    assert await api.call(account, "a", 500) == 120
    assert (await api.state(account))["accepting_calls"] is False

    raised = await api.enable(account, limit_minutes=10)
    assert raised.status_code == 200
    assert raised.json()["accepting_calls"] is True
    assert (await api.authorize(account, "b"))["allowed"] is True
    await api.usage(account, "b", 300)  # 420 s of 600: 70 %
    assert await api.call(account, "c", 120) == 120  # 540 s: 90 % of the new limit
    await eventually(lambda: len(mail.with_notice(email, "limit_warning")) == 1)
    await eventually(
        lambda: (
            [e["type"] for e in webhook_receiver.for_account(account)]
            == ["service.stopped", "service.resumed"]
        )
    )
    # The 2-minute limit was reached at once (no separate warning); the 10-minute one
    # warned at 90 %.
    assert await notice_kinds(api, account) == ["limit_reached", "limit_warning"]


async def test_lowering_the_limit_below_usage_stops_at_once(
    api: Api, webhook_receiver: WebhookReceiver
) -> None:
    account = await api.create_account()
    assert (await api.enable(account, limit_cents=500)).status_code == 200
    await use_up_included(api, account)
    assert await api.call(account, "a", 400) == 400
    lowered = await api.enable(account, limit_cents=200)
    assert lowered.status_code == 200
    assert lowered.json() == {
        "enabled": True,
        "limit_cents": 200,
        "limit_minutes": None,
        "extra_allowed_seconds": 307,  # 200 ct × 60 / 39 ct
        "accepting_calls": False,
        "stop_reason": "limit_reached",
    }
    assert await api.authorize(account, "b") == {"allowed": False, "reason": "limit_reached"}
    state = await api.state(account)
    assert state["extra_seconds"] == 400  # what was used stays billable
    await eventually(
        lambda: [e["type"] for e in webhook_receiver.for_account(account)] == ["service.stopped"]
    )


async def test_disabling_keeps_usage_billable_and_refuses_calls(
    api: Api, mail: MailCatcher
) -> None:
    account = await api.create_account()
    assert (await api.enable(account, limit_cents=1000)).status_code == 200
    await use_up_included(api, account)
    assert await api.call(account, "a", 100) == 100
    response = await api.admin.put(f"/v1/accounts/{account}/extra-minutes", json={"enabled": False})
    assert response.status_code == 200
    assert response.json()["stop_reason"] == "included_minutes_exhausted"
    assert await api.authorize(account, "b") == {
        "allowed": False,
        "reason": "included_minutes_exhausted",
    }
    state = await api.state(account)
    assert (state["extra_seconds"], state["extra_cost_cents"], state["enabled"]) == (100, 65, False)

    def history() -> list[SettingsChange]:
        # Written by the settings outbox after the answer, in the order of the changes.
        with session_scope(api.settings.resolved_database_url()) as session:
            return list(
                session.exec(
                    select(SettingsChange)
                    .where(
                        SettingsChange.account_id == account,
                        SettingsChange.kind == "extra_minutes",
                    )
                    .order_by(SettingsChange.changed_at, SettingsChange.id)  # type: ignore[arg-type]
                )
            )

    changes = await eventually(lambda: (rows := history()) and len(rows) >= 2 and rows)
    assert [(c.old_enabled, c.new_enabled, c.new_limit_cents) for c in changes] == [
        (False, True, 1000),
        (True, False, None),
    ]
    assert all(c.actor == "admin" for c in changes)


async def test_included_exhausted_without_extra_minutes_suggests_them_once(
    api: Api, mail: MailCatcher, webhook_receiver: WebhookReceiver
) -> None:
    account = await api.create_account(locale="de")
    email = f"{account}@example.com"
    await use_up_included(api, account)
    for call in ("a", "b", "c"):
        assert await api.authorize(account, call) == {
            "allowed": False,
            "reason": "included_minutes_exhausted",
        }
    await eventually(lambda: len(mail.with_notice(email, "included_minutes_exhausted")) == 1)
    await asyncio.sleep(0.3)
    notice = mail.with_notice(email, "included_minutes_exhausted")
    assert len(notice) == 1
    assert "Inklusivminuten" in notice[0].subject
    assert "minutenbasierte Zahlung" in notice[0].text()
    assert await notice_kinds(api, account) == ["included_minutes_exhausted"]
    state = await api.state(account)
    assert (state["accepting_calls"], state["stop_reason"]) == (False, "included_minutes_exhausted")


async def test_free_plan_cannot_enable_extra_minutes(api: Api) -> None:
    account = await api.create_account("free")
    response = await api.enable(account, limit_cents=5000)
    assert response.status_code == 409
    assert response.json()["error"] == "not_eligible"
    state = await api.state(account)
    assert state["enabled"] is False and state["limit_cents"] is None


async def test_duplicate_reports_count_once(api: Api) -> None:
    account = await api.create_account()
    assert (await api.authorize(account, "dup"))["allowed"]
    answers = await asyncio.gather(*(api.usage(account, "dup", 200) for _ in range(5)))
    assert sorted(a["duplicate"] for a in answers) == [False, True, True, True, True]
    assert (await api.usage(account, "dup", 999)) == {"recorded": True, "duplicate": True}
    state = await api.state(account)
    assert state["used_seconds"] == 200
    await eventually(lambda: len(ledger_rows(api, account)) == 1)


async def test_over_reporting_is_recorded_and_flagged_not_billed(api: Api) -> None:
    account = await api.create_account()
    assert (await api.authorize(account, "long"))["granted_seconds"] == 300
    await api.usage(account, "long", 450)
    await api.usage(account, "never-authorised", 60)
    state = await api.state(account)
    assert state["used_seconds"] == 300
    rows = await eventually(
        lambda: len(ledger_rows(api, account)) == 2 and ledger_rows(api, account)
    )
    by_call = {row.call_id: row for row in rows}
    assert (by_call["long"].reported_seconds, by_call["long"].excess_seconds) == (450, 150)
    assert (
        by_call["never-authorised"].billed_included_seconds,
        by_call["never-authorised"].excess_seconds,
    ) == (0, 60)


async def test_a_restarted_worker_loses_nothing(api: Api, worker: Any) -> None:
    account = await api.create_account()
    assert (await api.enable(account, limit_cents=1000)).status_code == 200
    await api.call(account, "before", 100)
    await worker.stop()
    try:
        # Requests wait for a worker (the dispatcher retries under its deadline).
        pending = [asyncio.create_task(api.call(account, f"during-{i}", 50)) for i in range(5)]
        await asyncio.sleep(1.0)
        assert not any(task.done() for task in pending)
    finally:
        await worker.start()
    talked = await asyncio.gather(*pending)
    assert talked == [50] * 5
    await api.usage(account, "during-0", 50)  # a retry after the restart: a duplicate
    state = await api.state(account)
    assert state["used_seconds"] == 350
    await eventually(lambda: len(ledger_rows(api, account)) == 6)
