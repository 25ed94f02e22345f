"""Receivers down for longer than a billing period: calls go on, periods close, and every
notice and webhook is delivered exactly once when the receivers are back.

Before v3 the workflow waited for its outbox before every hand-over and period close, and
delivery retried for ever: an SMTP or webhook outage made every Update wait, and the
telephony backend got 503s for an account well inside its limit.
"""

from __future__ import annotations

import time
from collections import Counter

from sqlmodel import select

from billing.account_state import CONFIRMATIONS
from devstack.mail_catcher import CaughtMail, MailCatcher
from overtime.db import session_scope
from overtime.models import ClosedPeriod
from tests.conftest import SHORT_PERIOD_SECONDS, Api, WebhookReceiver, eventually

STARTER_INCLUDED = 100 * 60


async def test_smtp_and_webhook_down_across_a_period_close(
    short_api: Api, mail: MailCatcher, webhook_receiver: WebhookReceiver
) -> None:
    api = short_api
    account = await api.create_account()
    email = f"{account}@example.com"
    assert (await api.enable(account, limit_minutes=1)).status_code == 200
    first_period = (await api.state(account))["period_start"]

    mail.set_refusing(True)
    webhook_receiver.down = True
    try:
        slowest = 0.0
        # Included minutes, then the whole minute of extra: 90 % and 100 % are crossed,
        # the service stops; every answer comes at once although nothing can be delivered.
        for call_id, seconds in (("inc", STARTER_INCLUDED), ("x1", 54), ("x2", 6)):
            started = time.monotonic()
            await api.call(account, call_id, seconds)
            slowest = max(slowest, time.monotonic() - started)
        refused = await api.authorize(account, "refused")
        assert refused == {"allowed": False, "reason": "limit_reached"}
        stopped = await api.state(account)
        assert stopped["accepting_calls"] is False
        assert stopped["undelivered_notices"] >= 1  # the admin sees what is waiting

        # The period closes on time and the next one accepts calls again.
        async def next_period() -> bool:
            return (await api.state(account))["period_start"] != first_period

        await eventually(next_period, timeout=SHORT_PERIOD_SECONDS * 3)
        started = time.monotonic()
        assert (await api.authorize(account, "next-period"))["allowed"] is True
        await api.usage(account, "next-period", 5)
        slowest = max(slowest, time.monotonic() - started)
        assert slowest < 5, f"a call waited {slowest:.1f} s behind undeliverable side effects"

        def closed() -> list[ClosedPeriod]:
            with session_scope(api.settings.resolved_database_url()) as session:
                return list(
                    session.exec(select(ClosedPeriod).where(ClosedPeriod.account_id == account))
                )

        await eventually(lambda: len(closed()) >= 1, timeout=10)
        assert closed()[0].extra_used_seconds == 60
        # (Only the confirmations of switching on went out, before the outage began.)
        assert not limit_mail(mail, email), "nothing could have been delivered yet"
        assert not webhook_receiver.for_account(account)
    finally:
        mail.set_refusing(False)
        webhook_receiver.down = False

    # Back: each notice and each service event exactly once, in order.
    def delivered() -> bool:
        kinds = Counter(m.header("X-Overtime-Notice") for m in limit_mail(mail, email))
        events = [e["type"] for e in webhook_receiver.for_account(account)]
        return kinds["limit_reached"] == 1 and events[:2] == [
            "service.stopped",
            "service.resumed",
        ]

    await eventually(delivered, timeout=90, interval=0.5)
    kinds = Counter(m.header("X-Overtime-Notice") for m in mail.to(email))
    # 54 of 60 s crossed 90 %, the last 6 s reached 100 %, the closed period was invoiced:
    # one email each, none twice.
    await eventually(lambda: mail.with_notice(email, "invoice"), timeout=30)
    kinds = Counter(m.header("X-Overtime-Notice") for m in limit_mail(mail, email))
    assert kinds == Counter({"limit_warning": 1, "limit_reached": 1, "invoice": 1}), kinds
    events = webhook_receiver.for_account(account)
    assert [e["type"] for e in events] == ["service.stopped", "service.resumed"]
    assert len({e["id"] for e in events}) == len(events)


def limit_mail(mail: MailCatcher, email: str) -> list[CaughtMail]:
    """The account's emails but the confirmations a customer gets on switching on."""
    return [m for m in mail.to(email) if m.header("X-Overtime-Notice") not in CONFIRMATIONS]
