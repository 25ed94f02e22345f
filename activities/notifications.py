"""Notification activities: customer emails and signed telephony webhooks.

Both are recorded in the database and skipped when already recorded, so a retried (or
carried-over, repeated) delivery does not send twice; executions of one delivery side by
side take turns (:func:`overtime.db.serialised`), so the second finds the first's row.
(The one window left: SMTP accepted the message and the worker died before the row was
written; the retry then sends again with the same Message-ID, which mail systems treat
as the same message.)

Recipients and language are read from the account row when the notice is sent: the
account's ``email`` plus every address in ``alert_recipients``, in ``account.locale`` (so
a language chosen in the web app, or a billing address added after the notice was
raised, counts for it). Each recipient gets a message of its own. When some have it and
the next fails transiently, the row is written as ``partial`` with the addresses done
(``recipients``) before the activity raises; the retry sends only to the others, so
nobody gets a notice twice. A recipient refused for good is noted in ``error`` and the
rest still get theirs; the notice is ``failed`` only when nobody got it.

A delivery that can never succeed is recorded as ``failed`` with the reason, counted
and logged, and the activity returns: the workflow's outbox retries for ever, and an
address the relay refuses must not stay at its head for ever. Never succeeding means a
permanent SMTP refusal (5xx, or a message the relay cannot carry, such as a non-ASCII
address without SMTPUTF8), a receiver that answers 410 Gone, or any failure once the
item is older than ``delivery_give_up_seconds``. Everything else raises, so Temporal
retries it with backoff. A failed row dedupes like a sent one: nothing is tried again.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from temporalio import activity

from billing.account_state import INVOICE, PAYMENT_FAILED, WARNING_PERCENT
from billing.rules import PlanTerms, period_key
from overtime import formatting, mailer, notices, webhooks
from overtime.catalog import load_catalog
from overtime.db import as_utc, serialised, session_scope
from overtime.invoice_mail import invoice_email_context
from overtime.models import Account, Notification, WebhookDelivery
from overtime.observability import (
    NOTICES_FAILED,
    NOTICES_SENT,
    SERVICE_EVENTS_FAILED,
    WEBHOOK_FAILURES,
    count_in_activity,
)
from overtime.settings import Settings
from workflows.types import AccountProfile, NoticeDelivery, ServiceEventDelivery

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
            row = session.exec(
                select(Notification).where(
                    Notification.account_id == profile.account_id,
                    Notification.period_start == period_start,
                    Notification.notice_key == notice.key,
                )
            ).first()
            if row is not None and row.status != PARTIAL:
                return False
            done = _addresses(row.recipients) if row is not None else []
            earlier_error = row.error if row is not None else None
            reader = _reader(session.get(Account, profile.account_id), profile)
        # Everyone it goes to, as the account row says now; a retry after a partial
        # failure skips those who have it already.
        pending = [a for a in reader.recipients if a.lower() not in {d.lower() for d in done}]
        delivered = list(done)
        refusals = [earlier_error] if earlier_error else []
        reasons: list[str] = []  # why addresses can never get it: refused, expired, ...
        subject, body = notice.kind, None  # recorded even if rendering is what fails
        try:
            email = self._render(delivery, period_start, period_end, reader)
            subject, body = email.subject, email.text
            for address in pending:
                try:
                    self._deliver(delivery, period_start, address, email)
                except Exception as err:
                    permanent = _permanent_smtp_failure(err)
                    if permanent is None:
                        raise  # transient: the outer handler keeps what went out
                    reasons.append(permanent[0])
                    refusals.append(permanent[1])
                    continue
                delivered.append(address)
        except Exception as err:
            reason, error = _permanent_smtp_failure(err) or self._expired(notice.created_at, err)
            if reason is None:
                if len(delivered) > len(done):
                    # Some have it: remember them, so the retry sends only to the rest.
                    self._record_notice(
                        delivery, period_start, subject, body, PARTIAL, refusals, delivered
                    )
                raise  # transient: Temporal retries
            reasons.append(reason)
            refusals.append(error or reason)
        status = "sent" if delivered else "failed"
        self._record_notice(delivery, period_start, subject, body, status, refusals, delivered)
        if status == "failed":
            reason = reasons[0] if reasons else "refused"
            count_in_activity(NOTICES_FAILED, kind=notice.kind, reason=reason)
            log.error(
                "notice failed for good",
                extra={
                    "account_id": profile.account_id,
                    "kind": notice.kind,
                    "key": notice.key,
                    "reason": reason,
                    "error": "; ".join(refusals),
                },
            )
            return False
        count_in_activity(NOTICES_SENT, kind=notice.kind)
        if refusals:
            log.warning(
                "notice not delivered to every recipient",
                extra={"account_id": profile.account_id, "kind": notice.kind, "key": notice.key},
            )
        log.info(
            "notice sent",
            extra={
                "account_id": profile.account_id,
                "kind": notice.kind,
                "key": notice.key,
                "recipients": len(delivered),
            },
        )
        return True

    def _deliver(
        self,
        delivery: NoticeDelivery,
        period_start: datetime,
        address: str,
        email: mailer.RenderedEmail,
    ) -> None:
        """One message per recipient: nobody sees the other addresses, and a refusal of
        one address leaves the others' messages alone."""
        notice, account_id = delivery.notice, delivery.profile.account_id
        mailer.send(
            host=self.settings.smtp_host,
            port=self.settings.smtp_port,
            sender=mailer.sender(self.settings),
            to=address,
            email=email,
            message_id=notices.notice_message_id(notice.kind, period_start, notice.key, account_id),
            headers=notices.notice_headers(notice.kind, account_id),
        )

    def _render(
        self,
        delivery: NoticeDelivery,
        period_start: datetime,
        period_end: datetime,
        reader: _Reader,
    ) -> mailer.RenderedEmail:
        profile, notice = delivery.profile, delivery.notice
        locale = formatting.language(reader.locale)
        plan = self._plan(delivery)
        old_plan = self._catalog().get(notice.old_plan) if notice.old_plan else None
        figures = notices.Figures(
            kind=notice.kind,
            locale=locale,
            timezone=profile.timezone,
            period_start=period_start,
            period_end=period_end,
            extra_seconds=notice.extra_seconds,
            extra_cost_cents=notice.extra_cost_cents,
            limit_cents=notice.limit_cents,
            limit_minutes=notice.limit_minutes,
            price_cents=plan.extra_minute_price_cents,
            link=notice.link,
            final=notice.final,
            cause=notice.cause,
        )
        record = notices.NoticeRecord(
            percent=notice.percent or WARNING_PERCENT,
            extra_allowed_seconds=notice.extra_allowed_seconds,
            alert_percents=reader.alert_percents,
            monthly_fee_cents=plan.monthly_fee_cents,
            included_minutes=plan.included_minutes,
            extra_available=plan.is_paid,
            plan=plan.plan,
            old_plan=old_plan.plan if old_plan else notice.old_plan,
            method=notice.detail or reader.method_label,
            changed_at=notice.created_at,
            # Invoice emails: the row's net, VAT, total and the next payment attempt.
            invoice=(
                invoice_email_context(
                    self.settings, profile.account_id, period_start, locale, profile.timezone
                )
                if notice.kind in (INVOICE, PAYMENT_FAILED)
                else {}
            ),
        )
        return notices.notice_email(self.settings, figures, record)

    def _plan(self, delivery: NoticeDelivery) -> PlanTerms:
        """The plan the notice speaks of: the delivery's, or the catalog's when the notice
        names another (a plan change delivered after a later one)."""
        named = delivery.notice.plan
        if named is None or named == delivery.plan.plan:
            return delivery.plan
        return self._catalog().get(named, delivery.plan)

    def _catalog(self) -> dict[str, PlanTerms]:
        try:
            return load_catalog(self.settings.plans_file)
        except (OSError, ValueError):
            return {}

    def _record_notice(
        self,
        delivery: NoticeDelivery,
        period_start: datetime,
        subject: str,
        body: str | None,
        status: str,
        refusals: list[str],
        delivered: list[str],
    ) -> None:
        """Write the notice's row, or update the partial row an earlier attempt left."""
        notice = delivery.notice
        error = _clip("; ".join(refusals)) if refusals else None
        with session_scope(self._db) as session:
            row = session.exec(
                select(Notification).where(
                    Notification.account_id == delivery.profile.account_id,
                    Notification.period_start == period_start,
                    Notification.notice_key == notice.key,
                )
            ).first()
            if row is None:
                row = Notification(
                    account_id=delivery.profile.account_id,
                    kind=notice.kind,
                    notice_key=notice.key,
                    to=delivery.profile.email,
                    subject=subject[:256],
                    period_start=period_start,
                    sent_at=datetime.now(UTC),
                    status=status,
                )
            elif row.status != PARTIAL:
                return  # recorded for good by a concurrent attempt already
            row.to = (delivered[0] if delivered else delivery.profile.email)[:320]
            row.subject = subject[:256]
            row.body = body
            row.recipients = ", ".join(delivered) or None
            row.status = status
            row.error = error
            row.sent_at = datetime.now(UTC)
            session.add(row)
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
        reason: str | None
        error: str | None
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


PARTIAL = "partial"  # some recipients have the notice; a retry sends to the rest


@dataclass(frozen=True)
class _Reader:
    """Who reads a notice and in which language, as the account row says at send time."""

    recipients: list[str]  # the account's own address first, then the extra ones
    locale: str
    alert_percents: list[int]
    method_label: str | None


def _reader(account: Account | None, profile: AccountProfile) -> _Reader:
    if account is None:  # no row (yet): the workflow's profile, nobody else
        return _Reader([profile.email], profile.locale, [WARNING_PERCENT], None)
    own = account.email or profile.email
    extra = [a for a in _addresses(account.alert_recipients) if a.lower() != own.lower()]
    percents = [int(p) for p in (account.alert_percents or "").split(",") if p.strip().isdigit()]
    return _Reader(
        recipients=[own, *dict.fromkeys(extra)],
        locale=account.locale or profile.locale,
        alert_percents=percents,
        method_label=_method_label(account),
    )


def _addresses(text: str | None) -> list[str]:
    return [a.strip() for a in (text or "").split(",") if a.strip()]


def _method_label(account: Account) -> str | None:
    if not account.payment_method_last4:
        return None
    brand = account.payment_method_brand or account.payment_method_bank or ""
    return f"{brand.title() if brand.islower() else brand} •••• {account.payment_method_last4}"
