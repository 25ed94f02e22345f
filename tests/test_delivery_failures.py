"""Notices and service events that can never be delivered are recorded as failed.

The activities run directly (``ActivityEnvironment``) against the real database, a real
SMTP server (the mail catcher, made to refuse, or to lack SMTPUTF8) and a real HTTP
receiver: a permanent refusal is recorded and the activity returns; a transient one
raises so Temporal retries; a recorded delivery, sent or failed, is never tried again.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select
from temporalio.common import MetricCounter, MetricMeter
from temporalio.testing import ActivityEnvironment

from activities.notifications import NotificationActivities
from billing.account_state import (
    DISABLED_BY_CUSTOMER,
    DISABLED_NO_PAYMENT_METHOD,
    Notice,
    ServiceEvent,
)
from billing.rules import PlanTerms, period_key
from devstack.mail_catcher import MailCatcher
from overtime import mailer
from overtime.db import session_scope
from overtime.models import Notification, WebhookDelivery
from overtime.observability import NOTICES_FAILED, NOTICES_SENT, SERVICE_EVENTS_FAILED, free_port
from overtime.settings import Settings
from tests.conftest import Api
from tests.test_web_security import browser_like, sign_in
from workflows.types import AccountProfile, NoticeDelivery, ServiceEventDelivery

STARTER = PlanTerms("starter", 4900, 100, 39)
PERIOD_START = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 12, 1, tzinfo=UTC)
GIVE_UP = 3600
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@overtime.local", "dev-admin-password"  # the defaults


# --- helpers ----------------------------------------------------------------------------


class RecordingMeter(type(MetricMeter.noop)):  # type: ignore[misc]
    """The worker's meter, counting what the activities count."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, tuple[tuple[str, Any], ...]]] = Counter()

    def create_counter(
        self, name: str, description: str | None = None, unit: str | None = None
    ) -> MetricCounter:
        meter = self

        class Recording(type(MetricMeter.noop.create_counter(name))):  # type: ignore[misc]
            def add(self, value: int, additional_attributes: Any = None) -> None:
                key = tuple(sorted((additional_attributes or {}).items()))
                meter.counts[(name, key)] += value

        return Recording(name, description, unit)

    def total(self, name: str, **attributes: str) -> int:
        return sum(
            value
            for (counted, key), value in self.counts.items()
            if counted == name and set(attributes.items()) <= set(key)
        )


def run(fn: Any, arg: Any, meter: RecordingMeter | None = None) -> Any:
    env = ActivityEnvironment()
    if meter is not None:
        env.metric_meter = meter
    return env.run(fn, arg)


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailCatcher]:
    """A relay of our own (the session's catcher is shared with running workflows)."""
    catcher = MailCatcher(mail_dir=tmp_path_factory.mktemp("relay")).start()
    yield catcher
    catcher.stop()


@pytest.fixture(scope="module")
def ascii_relay() -> Iterator[MailCatcher]:
    """A relay that does not offer SMTPUTF8."""
    catcher = MailCatcher(smtputf8=False).start()
    yield catcher
    catcher.stop()


def settings_for(database_url: str, tmp: Path, relay: MailCatcher, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp,
        "database_url": database_url,
        "smtp_port": relay.port,
        "delivery_give_up_seconds": GIVE_UP,
        "telephony_webhook_url": None,
    }
    return Settings(**{**values, **changes})


def notice_delivery(
    email: str | None = None,
    *,
    kind: str = "limit_warning",
    age: timedelta = timedelta(0),
    cause: str | None = None,
    notice_period: datetime | None = None,
) -> NoticeDelivery:
    account_id = f"acct-{uuid.uuid4().hex[:12]}"
    profile = AccountProfile(
        account_id, email or f"{account_id}@example.com", "de", "Europe/Berlin", PERIOD_START
    )
    notice = Notice(
        kind=kind,
        key=f"{kind}:v1",
        limit_cents=2000,
        extra_seconds=600,
        extra_cost_cents=390,
        created_at=datetime.now(UTC) - age,
        period_start=notice_period,
        period_end=PERIOD_START if notice_period else None,
        cause=cause,
    )
    return NoticeDelivery(profile, STARTER, PERIOD_START, PERIOD_END, notice)


def notice_rows(database_url: str, account_id: str) -> list[Notification]:
    with session_scope(database_url) as session:
        return list(session.exec(select(Notification).where(Notification.account_id == account_id)))


# --- notices ----------------------------------------------------------------------------


def test_a_refused_recipient_is_recorded_failed_and_never_retried(
    database_url: str, tmp_path: Path, relay: MailCatcher
) -> None:
    acts = NotificationActivities(settings_for(database_url, tmp_path, relay))
    delivery = notice_delivery()
    address = delivery.profile.email
    relay.refuse_recipient(address)
    meter = RecordingMeter()
    try:
        assert run(acts.send_notice, delivery, meter) is False  # returns, does not raise
    finally:
        relay.refuse_recipient(address, refuse=False)
    [row] = notice_rows(database_url, delivery.profile.account_id)
    assert row.status == "failed"
    assert "550" in (row.error or "") and address in (row.error or "")
    assert meter.total(NOTICES_FAILED, kind="limit_warning", reason="refused") == 1
    assert meter.total(NOTICES_SENT) == 0
    # The relay would take it now, but a failed notice dedupes like a sent one.
    assert run(acts.send_notice, delivery) is False
    assert relay.to(address) == []
    assert len(notice_rows(database_url, delivery.profile.account_id)) == 1


def test_a_non_ascii_address_needs_smtputf8(
    database_url: str, tmp_path: Path, relay: MailCatcher, ascii_relay: MailCatcher
) -> None:
    address = f"jürgen-{uuid.uuid4().hex[:6]}@example.de"
    old_relay = NotificationActivities(settings_for(database_url, tmp_path, ascii_relay))
    refused = notice_delivery(address)
    assert run(old_relay.send_notice, refused) is False
    [row] = notice_rows(database_url, refused.profile.account_id)
    assert row.status == "failed" and "SMTPUTF8" in (row.error or "")
    assert ascii_relay.messages == []

    # A relay that offers SMTPUTF8 gets the same address delivered.
    acts = NotificationActivities(settings_for(database_url, tmp_path, relay))
    delivered = notice_delivery(address)
    assert run(acts.send_notice, delivered) is True
    [mail] = relay.to(address)
    assert mail.header("X-Overtime-Account") == delivered.profile.account_id
    [row] = notice_rows(database_url, delivered.profile.account_id)
    assert (row.status, row.error) == ("sent", None)


def test_transient_failures_raise_so_temporal_retries(
    database_url: str, tmp_path: Path, relay: MailCatcher
) -> None:
    acts = NotificationActivities(settings_for(database_url, tmp_path, relay))
    delivery = notice_delivery()
    relay.set_refusing(True)  # 451 to every message
    try:
        with pytest.raises(Exception, match="451"):
            run(acts.send_notice, delivery)
    finally:
        relay.set_refusing(False)
    closed = NotificationActivities(
        settings_for(database_url, tmp_path, relay, smtp_port=free_port())
    )
    with pytest.raises(ConnectionRefusedError):
        run(closed.send_notice, delivery)
    assert notice_rows(database_url, delivery.profile.account_id) == []
    # Once the relay is back, the retry sends it.
    assert run(acts.send_notice, delivery) is True
    assert len(relay.to(delivery.profile.email)) == 1


def test_a_notice_still_failing_after_the_give_up_age_is_recorded_failed(
    database_url: str, tmp_path: Path, relay: MailCatcher
) -> None:
    closed = NotificationActivities(
        settings_for(database_url, tmp_path, relay, smtp_port=free_port())
    )
    young = notice_delivery(age=timedelta(seconds=GIVE_UP - 60))
    with pytest.raises(ConnectionRefusedError):
        run(closed.send_notice, young)
    old = notice_delivery(age=timedelta(seconds=GIVE_UP + 60))
    meter = RecordingMeter()
    assert run(closed.send_notice, old, meter) is False
    [row] = notice_rows(database_url, old.profile.account_id)
    assert row.status == "failed" and "ConnectionRefusedError" in (row.error or "")
    assert meter.total(NOTICES_FAILED, reason="expired") == 1


def test_a_repeated_delivery_sends_once(
    database_url: str, tmp_path: Path, relay: MailCatcher
) -> None:
    acts = NotificationActivities(settings_for(database_url, tmp_path, relay))
    delivery = notice_delivery()
    assert run(acts.send_notice, delivery) is True
    assert run(acts.send_notice, delivery) is False
    assert len(relay.to(delivery.profile.email)) == 1
    assert len(notice_rows(database_url, delivery.profile.account_id)) == 1


def test_executions_side_by_side_send_once(
    database_url: str, tmp_path: Path, relay: MailCatcher
) -> None:
    """A notice carried over a continue-as-new while its first delivery still runs."""
    acts = NotificationActivities(settings_for(database_url, tmp_path, relay))
    delivery = notice_delivery()
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: run(acts.send_notice, delivery), range(6)))
    assert sorted(results) == [False] * 5 + [True]
    assert len(relay.to(delivery.profile.email)) == 1
    assert len(notice_rows(database_url, delivery.profile.account_id)) == 1


def test_a_carried_over_notice_keeps_its_own_period(
    database_url: str, tmp_path: Path, relay: MailCatcher
) -> None:
    """Delivered in the next period (delivery.period_start), keyed by the notice's."""
    acts = NotificationActivities(settings_for(database_url, tmp_path, relay))
    earlier = PERIOD_START - timedelta(days=31)
    delivery = notice_delivery(notice_period=earlier)
    assert run(acts.send_notice, delivery) is True
    [row] = notice_rows(database_url, delivery.profile.account_id)
    assert row.period_start == earlier
    [mail] = relay.to(delivery.profile.email)
    assert period_key(earlier) in (mail.header("Message-ID") or "")
    # The same notice seen again under the later period is still the same notice.
    assert run(acts.send_notice, delivery) is False


@pytest.mark.parametrize(
    ("cause", "says", "never_says"),
    [
        (
            DISABLED_BY_CUSTOMER,
            "Du hast die minutenbasierte Zahlung deaktiviert",
            "Zahlungsmethode",
        ),
        (
            DISABLED_NO_PAYMENT_METHOD,
            "Du hast Deine letzte Zahlungsmethode entfernt",
            "Du hast die",
        ),
        (None, "Du hast Deine letzte Zahlungsmethode entfernt", "Du hast die"),
    ],
)
def test_the_disabled_email_says_why(
    database_url: str,
    tmp_path: Path,
    relay: MailCatcher,
    cause: str | None,
    says: str,
    never_says: str,
) -> None:
    acts = NotificationActivities(settings_for(database_url, tmp_path, relay))
    delivery = notice_delivery(kind="extra_minutes_disabled", cause=cause)
    assert run(acts.send_notice, delivery) is True
    [mail] = relay.to(delivery.profile.email)
    text = mail.text()
    assert says in text and never_says not in text
    assert "werden wie gewohnt abgerechnet" in text  # used extra minutes are still billed
    assert "wieder aktivieren" in text


# --- service events (telephony webhook) ---------------------------------------------------


class Receiver:
    """A webhook endpoint answering with ``status``; keeps the ids it accepted."""

    def __init__(self) -> None:
        self.status = 204
        self.accepted: list[str] = []
        self.posts: list[str] = []  # every POST, duplicates included
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(json.loads(body)["id"])
                if receiver.status < 300:
                    receiver.accepted.append(json.loads(body)["id"])
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()
    found.server.server_close()


def event_delivery(age: timedelta = timedelta(0)) -> ServiceEventDelivery:
    account_id = f"acct-{uuid.uuid4().hex[:12]}"
    event = ServiceEvent(
        "service.stopped",
        "limit_reached",
        f"{account_id}:event:1",
        datetime.now(UTC) - age,
        period_start=PERIOD_START,
    )
    return ServiceEventDelivery(account_id, PERIOD_START + timedelta(days=30), event)


def event_row(database_url: str, delivery: ServiceEventDelivery) -> WebhookDelivery | None:
    with session_scope(database_url) as session:
        return session.get(WebhookDelivery, delivery.event.event_id)


def hooks(database_url: str, tmp: Path, relay: MailCatcher, url: str | None) -> Any:
    return NotificationActivities(settings_for(database_url, tmp, relay, telephony_webhook_url=url))


def test_a_gone_receiver_fails_for_good(
    database_url: str, tmp_path: Path, relay: MailCatcher, receiver: Receiver
) -> None:
    acts = hooks(database_url, tmp_path, relay, receiver.url)
    delivery = event_delivery()
    receiver.status = 410
    meter = RecordingMeter()
    try:
        assert run(acts.send_service_event, delivery, meter) is None
    finally:
        receiver.status = 204
    row = event_row(database_url, delivery)
    assert row is not None and (row.status, row.status_code) == ("failed", 410)
    assert "410" in (row.error or "")
    assert meter.total(SERVICE_EVENTS_FAILED, reason="gone") == 1
    assert run(acts.send_service_event, delivery) is None  # never tried again
    assert delivery.event.event_id not in receiver.accepted


def test_other_webhook_failures_retry_until_the_give_up_age(
    database_url: str, tmp_path: Path, relay: MailCatcher, receiver: Receiver
) -> None:
    acts = hooks(database_url, tmp_path, relay, receiver.url)
    young, old = event_delivery(), event_delivery(age=timedelta(seconds=GIVE_UP + 1))
    receiver.status = 503
    try:
        with pytest.raises(RuntimeError, match="503"):
            run(acts.send_service_event, young)
        assert event_row(database_url, young) is None
        assert run(acts.send_service_event, old) is None
    finally:
        receiver.status = 204
    row = event_row(database_url, old)
    assert row is not None and (row.status, row.status_code) == ("failed", 503)

    nobody = hooks(database_url, tmp_path, relay, f"http://127.0.0.1:{free_port()}/hooks")
    with pytest.raises(httpx.ConnectError):
        run(nobody.send_service_event, young)
    # The receiver is back: the retry delivers, once, with the event's own period.
    assert run(acts.send_service_event, young) == 204
    assert run(acts.send_service_event, young) is None
    assert receiver.accepted.count(young.event.event_id) == 1
    row = event_row(database_url, young)
    assert row is not None and (row.status, row.error) == ("delivered", None)


def test_one_event_side_by_side_is_posted_once(
    database_url: str, tmp_path: Path, relay: MailCatcher, receiver: Receiver
) -> None:
    acts = hooks(database_url, tmp_path, relay, receiver.url)
    delivery = event_delivery()
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: run(acts.send_service_event, delivery), range(6)))
    assert sorted(results, key=str) == [204] + [None] * 5
    assert receiver.posts.count(delivery.event.event_id) == 1


def test_without_a_webhook_url_an_event_is_skipped(
    database_url: str, tmp_path: Path, relay: MailCatcher
) -> None:
    delivery = event_delivery()
    assert run(hooks(database_url, tmp_path, relay, None).send_service_event, delivery) is None
    row = event_row(database_url, delivery)
    assert row is not None and (row.status, row.status_code) == ("skipped", None)


# --- what admins see ------------------------------------------------------------------------


async def test_admins_see_failed_notices_and_webhooks(api: Api) -> None:
    account_id = await api.create_account()
    error = "recipient refused: 550 5.1.1 mailbox unavailable"
    now = datetime.now(UTC)
    with session_scope(api.settings.resolved_database_url()) as session:
        session.add(
            Notification(
                account_id=account_id,
                kind="limit_warning",
                notice_key="limit_warning:v1",
                to=f"{account_id}@example.com",
                subject="90 % erreicht",
                period_start=PERIOD_START,
                sent_at=now,
                status="failed",
                error=error,
            )
        )
        session.add(
            WebhookDelivery(
                event_id=f"{account_id}:event:gone",
                account_id=account_id,
                event="service.stopped",
                reason="limit_reached",
                status_code=410,
                delivered_at=now,
                status="failed",
                error="webhook answered 410",
            )
        )
        session.commit()
    notices = await api.notifications(account_id)
    failed = [n for n in notices if n["status"] == "failed"]
    assert [(n["kind"], n["error"]) for n in failed] == [("limit_warning", error)]
    assert all(n["error"] is None for n in notices if n["status"] == "sent")

    async with browser_like(api) as browser:
        signed_in = await sign_in(browser, ADMIN_EMAIL, ADMIN_PASSWORD)
        assert signed_in.status_code == 303, signed_in.text
        page = await browser.get(f"/admin/accounts/{account_id}")
    assert page.status_code == 200, page.text[:500]
    assert 'data-testid="notices-failed"' in page.text
    assert "status-failed" in page.text and "550 5.1.1 mailbox unavailable" in page.text
    assert 'data-testid="failed-webhooks"' in page.text and "webhook answered 410" in page.text


def test_the_disabled_email_renders_without_a_cause() -> None:
    """Older callers (and resends) may pass no cause: the payment-method text."""
    context = {
        "product_name": "Safina",
        "account_id": "acct-1",
        "extra_minutes": "1.0",
        "cost": "€0.39",
        "settings_url": "http://127.0.0.1:8000/app/extra-minutes",
    }
    email = mailer.render("extra_minutes_disabled", "en", context)
    assert "you removed your last payment method" in email.text
    switched = mailer.render("extra_minutes_disabled", "en", {**context, "cause": "switched_off"})
    assert "you switched per-minute billing off" in switched.text
    assert switched.subject == "Extra minutes switched off"
