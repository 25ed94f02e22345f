"""Notification activities: customer emails and signed telephony webhooks.

Both are recorded in the database and skipped when already recorded, so a retried
activity does not send twice. (The one window left: SMTP accepted the message and the
worker died before the row was written; the retry then sends again with the same
Message-ID, which mail systems treat as the same message.)
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from temporalio import activity

from billing.rules import period_key
from overtime import mailer, webhooks
from overtime.db import session_scope
from overtime.models import Notification, WebhookDelivery
from overtime.observability import NOTICES_SENT, WEBHOOK_FAILURES, count_in_activity
from overtime.settings import Settings
from workflows.types import NoticeDelivery, ServiceEventDelivery

log = logging.getLogger(__name__)


@dataclass
class NotificationActivities:
    settings: Settings

    @property
    def _db(self) -> str:
        return self.settings.resolved_database_url()

    @activity.defn
    def send_notice(self, delivery: NoticeDelivery) -> bool:
        """Email one notice unless it was sent before; True when sent now."""
        profile, notice = delivery.profile, delivery.notice
        with session_scope(self._db) as session:
            if session.exec(
                select(Notification.id).where(
                    Notification.account_id == profile.account_id,
                    Notification.period_start == delivery.period_start,
                    Notification.notice_key == notice.key,
                )
            ).first():
                return False
        locale = profile.locale
        price = delivery.plan.extra_minute_price_cents
        email = mailer.render(
            notice.kind,
            locale,
            {
                "product_name": self.settings.product_name,
                "account_id": profile.account_id,
                "extra_minutes": mailer.format_minutes(notice.extra_seconds, locale),
                "cost": mailer.format_money(notice.extra_cost_cents, locale),
                "limit": mailer.format_money(notice.limit_cents, locale)
                if notice.limit_cents is not None
                else "–",
                "price": mailer.format_money(price, locale),
                "period": mailer.format_period(
                    delivery.period_start, delivery.period_end, profile.timezone, locale
                ),
                "settings_url": f"{self.settings.public_url}/app/extra-minutes",
                "payment_url": f"{self.settings.public_url}/app/payment",
                "link": notice.link,
                "final": notice.final,
            },
        )
        key_digest = hashlib.sha256(notice.key.encode()).hexdigest()[:16]
        message_id = (
            f"<{notice.kind}.{period_key(delivery.period_start)}.{key_digest}"
            f".{profile.account_id}@overtime>"
        )
        mailer.send(
            host=self.settings.smtp_host,
            port=self.settings.smtp_port,
            sender=self.settings.mail_from,
            to=profile.email,
            email=email,
            message_id=message_id,
            headers={"X-Overtime-Notice": notice.kind, "X-Overtime-Account": profile.account_id},
        )
        with session_scope(self._db) as session:
            session.add(
                Notification(
                    account_id=profile.account_id,
                    kind=notice.kind,
                    notice_key=notice.key,
                    to=profile.email,
                    subject=email.subject,
                    period_start=delivery.period_start,
                    sent_at=datetime.now(UTC),
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # recorded by a concurrent attempt: sent once already
        count_in_activity(NOTICES_SENT, kind=notice.kind)
        log.info(
            "notice sent",
            extra={"account_id": profile.account_id, "kind": notice.kind, "key": notice.key},
        )
        return True

    @activity.defn
    def send_service_event(self, delivery: ServiceEventDelivery) -> int | None:
        """POST a signed service event to the telephony webhook; returns its status."""
        event = delivery.event
        with session_scope(self._db) as session:
            if session.get(WebhookDelivery, event.event_id) is not None:
                return None
        status: int | None = None
        url = self.settings.telephony_webhook_url
        if url:
            body = webhooks.encode_event(
                {
                    "id": event.event_id,
                    "type": event.event,
                    "account_id": delivery.account_id,
                    "reason": event.reason,
                    "created_at": event.created_at.isoformat(),
                    "period_start": delivery.period_start.isoformat(),
                }
            )
            response = httpx.post(
                url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    webhooks.SIGNATURE_HEADER: webhooks.sign(body, self.settings.webhook_secret),
                },
                timeout=10,
            )
            if response.status_code >= 300:
                # Raising makes Temporal retry with backoff until the receiver accepts.
                count_in_activity(WEBHOOK_FAILURES, direction="telephony")
                raise RuntimeError(f"webhook {url} answered {response.status_code}")
            status = response.status_code
        with session_scope(self._db) as session:
            session.add(
                WebhookDelivery(
                    event_id=event.event_id,
                    account_id=delivery.account_id,
                    event=event.event,
                    reason=event.reason,
                    status_code=status,
                    delivered_at=datetime.now(UTC),
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
        return status
