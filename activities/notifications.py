"""Notification activities: customer emails and signed telephony webhooks.

Both are recorded in the database and skipped when already recorded, so a retried (or
carried-over, repeated) delivery does not send twice; executions of one delivery side by
side take turns (:func:`overtime.db.serialised`), so the second finds the first's row.
(The one window left: SMTP accepted the message and the worker died before the row was
written; the retry then sends again with the same Message-ID, which mail systems treat
as the same message.)

A delivery that can never succeed is recorded as ``failed`` with the reason, counted
and logged, and the activity returns: the workflow's outbox retries for ever, and an
address the relay refuses must not stay at its head for ever. Never succeeding means a
permanent SMTP refusal (5xx, or a message the relay cannot carry, such as a non-ASCII
address without SMTPUTF8), a receiver that answers 410 Gone, or any failure once the
item is older than ``delivery_give_up_seconds``. Everything else raises, so Temporal
retries it with backoff. A failed row dedupes like a sent one: nothing is tried again.
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from temporalio import activity

from billing.rules import period_key
from overtime import mailer, webhooks
from overtime.db import as_utc, serialised, session_scope
from overtime.models import Notification, WebhookDelivery
from overtime.observability import (
    NOTICES_FAILED,
    NOTICES_SENT,
    SERVICE_EVENTS_FAILED,
    WEBHOOK_FAILURES,
    count_in_activity,
)
from overtime.settings import Settings
from workflows.types import NoticeDelivery, ServiceEventDelivery

log = logging.getLogger(__name__)

GONE = 410  # the receiver says the endpoint is gone for good
MAX_ERROR_CHARS = 1_000


@dataclass
class NotificationActivities:
    settings: Settings

    @property
    def _db(self) -> str:
        return self.settings.resolved_database_url()

    @activity.defn
    def send_notice(self, delivery: NoticeDelivery) -> bool:
        """Email one notice unless it was sent (or given up) before; True when sent now."""
        notice = delivery.notice
        # The notice's own period: it may be delivered after that period closed.
        period_start = notice.period_start or delivery.period_start
        once = f"notice:{delivery.profile.account_id}:{period_key(period_start)}:{notice.key}"
        with serialised(self._db, once):
            return self._send_notice(delivery, period_start)

    def _send_notice(self, delivery: NoticeDelivery, period_start: datetime) -> bool:
        profile, notice = delivery.profile, delivery.notice
        period_end = notice.period_end or delivery.period_end
        with session_scope(self._db) as session:
            if session.exec(
                select(Notification.id).where(
                    Notification.account_id == profile.account_id,
                    Notification.period_start == period_start,
                    Notification.notice_key == notice.key,
                )
            ).first():
                return False
        subject = notice.kind  # recorded even if rendering is what fails
        try:
            email = self._render(delivery, period_start, period_end)
            subject = email.subject
            key_digest = hashlib.sha256(notice.key.encode()).hexdigest()[:16]
            mailer.send(
                host=self.settings.smtp_host,
                port=self.settings.smtp_port,
                sender=self.settings.mail_from,
                to=profile.email,
                email=email,
                message_id=(
                    f"<{notice.kind}.{period_key(period_start)}.{key_digest}"
                    f".{profile.account_id}@overtime>"
                ),
                headers={
                    "X-Overtime-Notice": notice.kind,
                    "X-Overtime-Account": profile.account_id,
                },
            )
        except Exception as err:
            reason, error = _permanent_smtp_failure(err) or self._expired(notice.created_at, err)
            if reason is None:
                raise  # transient: Temporal retries
            self._record_notice(delivery, period_start, subject, "failed", error)
            count_in_activity(NOTICES_FAILED, kind=notice.kind, reason=reason)
            log.error(
                "notice failed for good",
                extra={
                    "account_id": profile.account_id,
                    "kind": notice.kind,
                    "key": notice.key,
                    "reason": reason,
                    "error": error,
                },
            )
            return False
        self._record_notice(delivery, period_start, subject, "sent", None)
        count_in_activity(NOTICES_SENT, kind=notice.kind)
        log.info(
            "notice sent",
            extra={"account_id": profile.account_id, "kind": notice.kind, "key": notice.key},
        )
        return True

    def _render(
        self, delivery: NoticeDelivery, period_start: datetime, period_end: datetime
    ) -> mailer.RenderedEmail:
        profile, notice = delivery.profile, delivery.notice
        locale = profile.locale
        return mailer.render(
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
                "price": mailer.format_money(delivery.plan.extra_minute_price_cents, locale),
                "period": mailer.format_period(period_start, period_end, profile.timezone, locale),
                "settings_url": f"{self.settings.public_url}/app/extra-minutes",
                "payment_url": f"{self.settings.public_url}/app/payment",
                "link": notice.link,
                "final": notice.final,
                "cause": notice.cause,
            },
        )

    def _record_notice(
        self,
        delivery: NoticeDelivery,
        period_start: datetime,
        subject: str,
        status: str,
        error: str | None,
    ) -> None:
        with session_scope(self._db) as session:
            session.add(
                Notification(
                    account_id=delivery.profile.account_id,
                    kind=delivery.notice.kind,
                    notice_key=delivery.notice.key,
                    to=delivery.profile.email,
                    subject=subject[:256],
                    period_start=period_start,
                    sent_at=datetime.now(UTC),
                    status=status,
                    error=error,
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # recorded by a concurrent attempt already

    def _expired(self, created_at: datetime, err: Exception) -> tuple[str | None, str | None]:
        """('expired', why) once the item is too old to keep retrying, else (None, None)."""
        age = datetime.now(UTC) - as_utc(created_at)
        if age.total_seconds() < self.settings.delivery_give_up_seconds:
            return None, None
        return "expired", _clip(f"still failing {age} after it was raised: {_describe(err)}")

    @activity.defn
    def send_service_event(self, delivery: ServiceEventDelivery) -> int | None:
        """POST a signed service event to the telephony webhook; returns its status.

        None: nothing delivered now (delivered before, no webhook URL, or given up).
        """
        with serialised(self._db, f"event:{delivery.event.event_id}"):
            return self._send_service_event(delivery)

    def _send_service_event(self, delivery: ServiceEventDelivery) -> int | None:
        event = delivery.event
        with session_scope(self._db) as session:
            if session.get(WebhookDelivery, event.event_id) is not None:
                return None
        url = self.settings.telephony_webhook_url
        if not url:
            self._record_event(delivery, "skipped", None, None)
            return None
        status: int | None = None
        try:
            response = self._post(url, delivery)
            status = response.status_code
            if status < 300:
                self._record_event(delivery, "delivered", status, None)
                return status
            failure: Exception = RuntimeError(f"webhook {url} answered {status}")
        except Exception as err:  # connection refused, timeouts, ...
            failure = err
        count_in_activity(WEBHOOK_FAILURES, direction="telephony")
        if status == GONE:
            reason, error = "gone", _clip(str(failure))
        else:
            reason, error = self._expired(event.created_at, failure)
        if reason is None:
            raise failure  # Temporal retries with backoff until the receiver accepts
        self._record_event(delivery, "failed", status, error)
        count_in_activity(SERVICE_EVENTS_FAILED, event=event.event, reason=reason)
        log.error(
            "service event failed for good",
            extra={
                "account_id": delivery.account_id,
                "event_id": event.event_id,
                "reason": reason,
                "error": error,
            },
        )
        return None

    def _post(self, url: str, delivery: ServiceEventDelivery) -> httpx.Response:
        event = delivery.event
        body = webhooks.encode_event(
            {
                "id": event.event_id,
                "type": event.event,
                "account_id": delivery.account_id,
                "reason": event.reason,
                "created_at": event.created_at.isoformat(),
                "period_start": (event.period_start or delivery.period_start).isoformat(),
            }
        )
        return httpx.post(
            url,
            content=body,
            headers={
                "Content-Type": "application/json",
                webhooks.SIGNATURE_HEADER: webhooks.sign(body, self.settings.webhook_secret),
            },
            timeout=10,
        )

    def _record_event(
        self,
        delivery: ServiceEventDelivery,
        status: str,
        status_code: int | None,
        error: str | None,
    ) -> None:
        event = delivery.event
        with session_scope(self._db) as session:
            session.add(
                WebhookDelivery(
                    event_id=event.event_id,
                    account_id=delivery.account_id,
                    event=event.event,
                    reason=event.reason,
                    status_code=status_code,
                    delivered_at=datetime.now(UTC),
                    status=status,
                    error=error,
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()  # recorded by a concurrent attempt already


def _permanent_smtp_failure(err: Exception) -> tuple[str, str] | None:
    """(reason, error text) when the mail can never be delivered as it is, else None.

    Only replies about this message count: 5xx for its recipient, sender or content, and
    a message the relay cannot carry at all. 4xx replies and connection trouble pass.
    """
    if isinstance(err, smtplib.SMTPNotSupportedError):
        return "unsupported", _clip(f"the mail relay cannot carry this message: {err}")
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        replies = err.recipients.values()
        if replies and all(code >= 500 for code, _ in replies):
            text = "; ".join(
                f"{address}: {code} {_text(reply)}"
                for address, (code, reply) in err.recipients.items()
            )
            return "refused", _clip(f"recipient refused: {text}")
        return None
    if isinstance(err, smtplib.SMTPSenderRefused | smtplib.SMTPDataError) and err.smtp_code >= 500:
        return "refused", _clip(f"{err.smtp_code} {_text(err.smtp_error)}")
    return None


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
