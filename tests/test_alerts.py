"""Alert thresholds and extra recipients over HTTP and SMTP with the real stack.

The workflow decides when a threshold is crossed (once per period and limit); the
notification activity sends each notice to the account's address and its extra
recipients, in the language on the account row at send time, and keeps what it sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select
from temporalio.testing import ActivityEnvironment

from activities.notifications import PARTIAL, NotificationActivities
from billing.account_state import Notice
from billing.rules import PlanTerms
from devstack.mail_catcher import MailCatcher
from overtime.db import session_scope
from overtime.models import Account, Notification
from overtime.settings import Settings
from tests.conftest import Api, eventually
from tests.test_web_security import browser_like, sign_in
from workflows.types import AccountProfile, NoticeDelivery

STARTER_INCLUDED = 6000
PASSWORD = "correct horse battery"


def rows(api: Api, account_id: str, kind: str | None = None) -> list[Notification]:
    with session_scope(api.settings.resolved_database_url()) as session:
        query = select(Notification).where(Notification.account_id == account_id)
        if kind:
            query = query.where(Notification.kind == kind)
        return list(session.exec(query.order_by(Notification.id)))


def set_locale(api: Api, account_id: str, locale: str) -> None:
    """What the web app's language memory does when the customer picks a language."""
    with session_scope(api.settings.resolved_database_url()) as session:
        account = session.get(Account, account_id)
        assert account is not None
        account.locale = locale
        session.add(account)
        session.commit()


async def test_each_threshold_mails_once_to_every_recipient(api: Api, mail: MailCatcher) -> None:
    account = await api.create_account(locale="de")
    own = f"{account}@example.com"
    billing = f"billing-{uuid.uuid4().hex[:8]}@example.com"
    assert (await api.enable(account, limit_minutes=10)).status_code == 200
    answer = await api.admin.put(
        f"/v1/accounts/{account}/alerts",
        json={"thresholds": [75, 50, 90], "recipients": [billing.upper()]},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"thresholds": [50, 75, 90], "recipients": [billing]}
    assert await api.call(account, "included", STARTER_INCLUDED) == STARTER_INCLUDED

    def warnings(address: str) -> list[str]:
        return [m.subject for m in mail.with_notice(address, "limit_warning")]

    # 310 of 600 extra seconds: 51.7 %, in German (the account's language).
    assert await api.call(account, "x1", 310) == 310
    await eventually(lambda: len(warnings(own)) == 1 and len(warnings(billing)) == 1)
    [first] = mail.with_notice(billing, "limit_warning")
    assert first.subject == "50 % Deines Limits für zusätzliche Minuten erreicht"
    assert "5 von 10 Min." in first.text()  # the customer's unit: minutes
    assert first.header("From") == "Safina <billing@overtime.local>"
    assert account not in first.subject + first.text() + first.html()

    # The customer switches the web app to English: the next email follows.
    set_locale(api, account, "en")
    assert await api.call(account, "x2", 150) == 150  # 460 s: 76.7 %
    await eventually(lambda: len(warnings(own)) == 2 and len(warnings(billing)) == 2)
    second = mail.with_notice(own, "limit_warning")[-1]
    assert second.subject == "You have used 75 % of your extra-minutes limit"
    assert "7 of 10 min" in second.text()

    assert await api.call(account, "x3", 90) == 90  # 550 s: 91.7 %
    assert await api.call(account, "x4", 5) == 5  # still below 100 %: nothing new
    assert await api.call(account, "x5", 100) == 45  # stopped at the limit
    await eventually(lambda: len(mail.with_notice(billing, "limit_reached")) == 1)
    for address in (own, billing):
        assert sorted(warnings(address)) == sorted(
            [
                "50 % Deines Limits für zusätzliche Minuten erreicht",
                "You have used 75 % of your extra-minutes limit",
                "You have used 90 % of your extra-minutes limit",
            ]
        )
        assert len(mail.with_notice(address, "limit_reached")) == 1

    # What was sent is kept: subject, text and every address.
    kept = rows(api, account, "limit_warning")
    assert len(kept) == 3
    for row in kept:
        assert row.status == "sent" and row.recipients == f"{own}, {billing}"
        assert row.body and "Safina" in row.body
    assert "5 von 10 Min." in (kept[0].body or "")

    # ... and shown on the notices page.
    async with browser_like(api) as client:
        response = await api.admin.put(
            f"/v1/accounts/{account}/password", json={"password": PASSWORD}
        )
        assert response.status_code == 204
        assert (await sign_in(client, own, PASSWORD)).status_code == 303
        page = await client.get(f"/app/a/{account}/notices")
        assert page.status_code == 200
        assert page.text.count('data-testid="notice-content"') == len(rows(api, account))
        assert "5 von 10 Min." in page.text and billing in page.text
        assert "You have used 75 % of your extra-minutes limit" in page.text


# --- the activity's retry after a partial failure -----------------------------------------


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailCatcher]:
    """A relay of our own (the session's catcher is shared with running workflows)."""
    catcher = MailCatcher(mail_dir=tmp_path_factory.mktemp("alerts-relay")).start()
    yield catcher
    catcher.stop()


def delivery_for(account_id: str, email: str) -> NoticeDelivery:
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    profile = AccountProfile(account_id, email, "en", "Europe/Berlin", start)
    notice = Notice(
        kind="limit_warning",
        key=f"limit_warning:{uuid.uuid4().hex[:8]}:p75",
        limit_cents=780,
        extra_seconds=1200,
        extra_cost_cents=780,
        created_at=datetime.now(UTC),
        percent=75,
        limit_minutes=None,
    )
    return NoticeDelivery(profile, PlanTerms("starter", 2900, 100, 39), start, end, notice)


async def test_a_retry_sends_only_to_those_who_do_not_have_it(
    api: Api, relay: MailCatcher, tmp_path: Path
) -> None:
    account = await api.create_account(locale="de")
    own = f"{account}@example.com"
    extra = [f"a-{uuid.uuid4().hex[:6]}@example.com", f"b-{uuid.uuid4().hex[:6]}@example.com"]
    set_recipients = await api.admin.put(
        f"/v1/accounts/{account}/alerts", json={"thresholds": [90], "recipients": extra}
    )
    assert set_recipients.status_code == 200, set_recipients.text
    settings = Settings(
        data_dir=tmp_path,
        database_url=api.settings.resolved_database_url(),
        smtp_port=relay.port,
        telephony_webhook_url=None,
    )
    acts = NotificationActivities(settings)
    delivery = delivery_for(account, own)
    # An earlier attempt reached the account's address and the first extra one, then the
    # relay failed (transiently): it left a partial row naming them.
    with session_scope(settings.resolved_database_url()) as session:
        session.add(
            Notification(
                account_id=account,
                kind="limit_warning",
                notice_key=delivery.notice.key,
                to=own,
                subject="75 %",
                period_start=delivery.period_start,
                sent_at=datetime.now(UTC),
                status=PARTIAL,
                recipients=f"{own}, {extra[0]}",
            )
        )
        session.commit()
    relay.refuse_recipient(extra[1])  # ... and this one is refused for good now
    try:
        assert ActivityEnvironment().run(acts.send_notice, delivery) is True
    finally:
        relay.refuse_recipient(extra[1], refuse=False)
    assert relay.to(own) == [] and relay.to(extra[0]) == []  # nobody gets it twice
    [row] = rows(api, account)
    assert row.status == "sent" and row.recipients == f"{own}, {extra[0]}"
    assert "550" in (row.error or "") and extra[1] in (row.error or "")
    assert row.body and "75 %" in row.subject  # German: the account row's language

    # Done is done: another run sends nothing at all.
    assert ActivityEnvironment().run(acts.send_notice, delivery) is False
    assert relay.to(extra[1]) == []

    # A fresh notice goes to all three, each its own message.
    fresh = delivery_for(account, own)
    assert ActivityEnvironment().run(acts.send_notice, fresh) is True
    for address in (own, *extra):
        [message] = relay.to(address)
        assert message.header("To") == address
        assert "Deines Limits" in message.subject
