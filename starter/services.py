"""The API's services: accounts in the database, live state in the account workflows.

Routes stay thin: they parse, authorise and call one function here. Errors that reach
the client are :class:`ApiError` (status, code, detail).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from typing import TypeVar
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import MetricMeter
from temporalio.service import RPCError

from billing.account_state import REASON_EXPIRED, REASON_UNAVAILABLE, alerts_problem
from billing.rules import (
    BillingRuleError,
    ExtraMinutesSettings,
    LimitBounds,
    PlanTerms,
    validate_settings,
)
from overtime.catalog import load_catalog
from overtime.db import as_utc, serialised, session_scope
from overtime.models import Account, Notification, Plan
from overtime.observability import AUTHORIZATIONS, count
from overtime.settings import Settings
from starter.dispatcher import AccountDispatcher, DispatchTimeout, WorkflowRejected
from starter.errors import ApiError, unavailable
from workflows.types import (
    AUTHORIZE,
    USAGE,
    AccountProfile,
    AccountSnapshot,
    AccountWorkflowInput,
    AlertsChange,
    BillingConfig,
    PlanChange,
    SettingsChange,
    TelephonyRequest,
    TelephonyResult,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long an API process trusts its cached copy of an account's start input. The copy
# only matters when a workflow must be (re)started; the workflow is authoritative.
ACCOUNT_CACHE_SECONDS = 30.0

REJECTION_STATUS = {
    "not_eligible": 409,
    "payment_method_required": 409,
    "invalid_limit": 422,
    "invalid_alerts": 422,
    "unknown_plan": 422,
    "invalid_reason": 422,
}
# Per-item answers that recorded nothing: the API answers them 503 unavailable.
UNANSWERED = {REASON_EXPIRED, REASON_UNAVAILABLE}
# Files in the zone database that are not zones: the machine's own setting, a template
# for POSIX rules, and a placeholder that means "unknown".
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def time_zones() -> frozenset[str]:
    """IANA zone names this machine knows (system zone files and the tzdata package)."""
    return frozenset(available_timezones()) - NOT_ZONES


def is_time_zone(name: str) -> bool:
    # A set look-up, never a path: ZoneInfo() would also open "../../etc/..." style keys.
    return name in time_zones()


def _refuse_taken(session: Session, account_id: str, email: str) -> None:
    """409 when the id (whatever its case) or the email address (idem) is in use.

    Existing look-ups stay exact; this is only the check at creation. Sign-in is by
    email and notices go to it, so an address belongs to one account. Both sides are
    lowered by the database (on SQLite that folds ASCII letters only).
    """
    same_id = session.exec(
        select(Account.account_id).where(func.lower(Account.account_id) == account_id.lower())
    ).first()
    if same_id is not None:
        raise ApiError(
            409,
            "account_exists",
            f"account {account_id!r} exists"
            + ("" if same_id == account_id else f" as {same_id!r} (ids ignore case)"),
        )
    same_email = session.exec(
        select(Account.account_id).where(func.lower(Account.email) == func.lower(email))
    ).first()
    if same_email is not None:
        raise ApiError(
            409,
            "email_taken",
            f"another account already uses the email address {email!r}",
        )


@dataclass
class AccountService:
    settings: Settings
    dispatcher: AccountDispatcher
    meter: MetricMeter | None = None

    def __post_init__(self) -> None:
        self._db = self.settings.resolved_database_url()
        self._cache: dict[str, tuple[float, AccountWorkflowInput]] = {}

    # --- catalog ----------------------------------------------------------------------

    @property
    def catalog(self) -> dict[str, PlanTerms]:
        return load_catalog(self.settings.plans_file)

    def sync_plans(self) -> None:
        with session_scope(self._db) as session:
            for terms in self.catalog.values():
                session.merge(
                    Plan(
                        plan=terms.plan,
                        monthly_fee_cents=terms.monthly_fee_cents,
                        included_minutes=terms.included_minutes,
                        extra_minute_price_cents=terms.extra_minute_price_cents,
                    )
                )
            session.commit()

    @property
    def bounds(self) -> LimitBounds:
        return LimitBounds(self.settings.max_limit_cents, self.settings.max_limit_minutes)

    def billing_config(self) -> BillingConfig:
        return BillingConfig(
            grant_chunk_seconds=self.settings.grant_chunk_seconds,
            grant_grace_seconds=self.settings.grant_grace_seconds,
            max_limit_cents=self.settings.max_limit_cents,
            max_limit_minutes=self.settings.max_limit_minutes,
            max_updates_per_run=self.settings.continue_as_new_after_updates,
            currency=self.settings.currency,
            stripe_task_queue=self.settings.stripe_task_queue,
            dunning_schedule_seconds=list(self.settings.dunning_schedule_seconds),
            reconcile_interval_seconds=self.settings.reconcile_interval_seconds,
        )

    # --- accounts ---------------------------------------------------------------------

    async def create_account(
        self, account_id: str, email: str, plan: str, locale: str | None, timezone: str | None
    ) -> Account:
        if plan not in self.catalog:
            raise ApiError(422, "unknown_plan", f"no plan {plan!r}; see GET /v1/plans")
        # Only an absent zone takes the default; "" is a mistake, not a wish for Berlin.
        zone = self.settings.default_timezone if timezone is None else timezone
        if not is_time_zone(zone):
            raise ApiError(
                422,
                "invalid_timezone",
                f"unknown time zone {zone!r}: give an IANA name such as 'Europe/Berlin'",
            )
        account = Account(
            account_id=account_id,
            email=email,
            plan=plan,
            locale=locale or self.settings.default_locale,
            timezone=zone,
            created_at=datetime.now(UTC),
            period_seconds=self.settings.period_seconds,
        )

        def insert() -> None:
            # One creation at a time per address, in every API process: the check below
            # and the insert cannot interleave with another request for the same email.
            # (Ids need no lock: the unique index on lower(account_id) holds them.)
            with serialised(self._db, f"account-email:{email.lower()}"):
                with session_scope(self._db) as session:
                    _refuse_taken(session, account_id, email)
                    session.add(account)
                    try:
                        session.commit()
                    except IntegrityError as err:
                        raise ApiError(
                            409, "account_exists", f"account {account_id!r} exists"
                        ) from err

        await run_in_threadpool(insert)
        # The only start that may trust that nothing was settled yet (see new_account).
        await self.dispatcher.ensure_started(replace(self._start_input(account), new_account=True))
        return account

    def _cached(self, account_id: str) -> AccountWorkflowInput | None:
        cached = self._cache.get(account_id)
        if cached and time.monotonic() - cached[0] < ACCOUNT_CACHE_SECONDS:
            return cached[1]
        return None

    async def load(self, account_id: str) -> AccountWorkflowInput:
        """The account's workflow start input; 404 for an unknown account."""
        cached = self._cached(account_id)
        if cached is not None:
            return cached

        def fetch() -> Account | None:
            with session_scope(self._db) as session:
                return session.get(Account, account_id)

        account = await run_in_threadpool(fetch)
        if account is None:
            raise ApiError(404, "unknown_account", f"no account {account_id!r}")
        start_input = self._start_input(account)
        self._cache[account_id] = (time.monotonic(), start_input)
        return start_input

    def _start_input(self, account: Account) -> AccountWorkflowInput:
        plan = self.catalog.get(account.plan)
        if plan is None:  # a plan taken out of config/plans.toml while accounts still use it
            raise ApiError(
                409,
                "unknown_plan",
                f"account {account.account_id!r} is on plan {account.plan!r}, "
                "which the plan catalog no longer has",
            )
        return AccountWorkflowInput(
            profile=AccountProfile(
                account_id=account.account_id,
                email=account.email,
                locale=account.locale,
                timezone=account.timezone,
                created_at=as_utc(account.created_at),
                period_seconds=account.period_seconds,
            ),
            plan=plan,
            settings=ExtraMinutesSettings(
                enabled=account.extra_enabled,
                limit_cents=account.limit_cents,
                limit_minutes=account.limit_minutes,
            ),
            config=self.billing_config(),
            settings_version=account.settings_version,
            alert_percents=parse_percents(account.alert_percents),
        )

    # --- telephony ----------------------------------------------------------------------

    async def authorize(
        self, account_id: str, call_id: str, request_id: str | None = None
    ) -> TelephonyResult:
        arrived = asyncio.get_running_loop().time()
        start_input = await self._load_for_telephony(account_id)
        try:
            result = await self._dispatch(
                start_input, TelephonyRequest(AUTHORIZE, call_id, request_id=request_id), arrived
            )
        except ApiError as err:
            if err.status == 503 and self.meter is not None:
                count(self.meter, AUTHORIZATIONS, result="unavailable", reason="")
            raise
        if self.meter is not None:
            count(
                self.meter,
                AUTHORIZATIONS,
                result="granted" if result.allowed else "refused",
                reason=result.reason or "",
            )
        if not result.allowed:
            log.info(
                "call refused",
                extra={"account_id": account_id, "call_id": call_id, "reason": result.reason},
            )
        return result

    async def report_usage(
        self, account_id: str, call_id: str, seconds: int, request_id: str | None = None
    ) -> TelephonyResult:
        if seconds > self.settings.max_call_seconds:
            raise ApiError(
                422,
                "invalid_seconds",
                f"seconds must be at most {self.settings.max_call_seconds} for one call",
            )
        arrived = asyncio.get_running_loop().time()
        start_input = await self._load_for_telephony(account_id)
        return await self._dispatch(
            start_input, TelephonyRequest(USAGE, call_id, seconds, request_id=request_id), arrived
        )

    async def _load_for_telephony(self, account_id: str) -> AccountWorkflowInput:
        """``load`` within the telephony timeout: a database that hangs on a cache miss
        answers 503 like a workflow that cannot answer."""
        # A cached account needs no time limit, and wait_for would wrap the load in a
        # task of its own on every request.
        cached = self._cached(account_id)
        if cached is not None:
            return cached
        try:
            return await asyncio.wait_for(
                self.load(account_id), self.settings.telephony_timeout_seconds
            )
        except TimeoutError as err:
            raise unavailable(
                "the account could not be loaded in time", DispatchTimeout.retry_after
            ) from err

    async def _dispatch(
        self, start_input: AccountWorkflowInput, request: TelephonyRequest, arrived: float
    ) -> TelephonyResult:
        """One deadline from the request's arrival covers the account load and the
        workflow's answer together."""
        try:
            result = await self.dispatcher.telephony(start_input, request, arrived)
        except DispatchTimeout as err:
            raise unavailable(str(err), err.retry_after) from err
        except WorkflowRejected as err:
            raise ApiError(422, err.code, err.detail) from err
        except (RPCError, WorkflowUpdateFailedError) as err:
            # Anything else Temporal answers: the telephony backend can only try again.
            log.exception(
                "telephony request failed", extra={"account_id": start_input.profile.account_id}
            )
            raise unavailable(f"Temporal: {err}", DispatchTimeout.retry_after) from err
        if result.reason in UNANSWERED:
            # Nothing was recorded (a late authorisation, the ledger slow to answer).
            raise unavailable(
                "the account could not answer in time; nothing was recorded",
                DispatchTimeout.retry_after,
            )
        return result

    # --- settings and state ---------------------------------------------------------------

    async def change_extra_minutes(
        self,
        account_id: str,
        wanted: ExtraMinutesSettings,
        actor: str,
        *,
        change_id: str | None = None,
        reason: str | None = None,
    ) -> AccountSnapshot:
        start_input = await self.load(account_id)
        try:
            validate_settings(wanted, start_input.plan, self.bounds)
        except BillingRuleError as err:
            # Eligibility is the live plan's to decide (a plan change may not have reached
            # the account row yet): the workflow's validator answers that one.
            if err.code != "not_eligible":
                raise ApiError(REJECTION_STATUS.get(err.code, 422), err.code, err.detail) from err
        # One change id per API call: applied once however often it is retried.
        change = SettingsChange(
            settings=wanted, actor=actor, change_id=change_id or str(uuid.uuid4()), reason=reason
        )
        return await self._change(account_id, self.dispatcher.change_settings, change)

    async def change_plan(
        self,
        account_id: str,
        plan_id: str,
        *,
        actor: str,
        change_id: str | None = None,
        reason: str | None = None,
    ) -> AccountSnapshot:
        """Move the account to another plan at once (rules: ``PeriodState.change_plan``)."""
        plan = self.catalog.get(plan_id)
        if plan is None:
            raise ApiError(
                422, "unknown_plan", f"plan {plan_id!r} is not in the catalog; see GET /v1/plans"
            )
        change = PlanChange(plan, actor, change_id or str(uuid.uuid4()), reason)
        return await self._change(account_id, self.dispatcher.change_plan, change)

    async def change_alerts(
        self,
        account_id: str,
        percents: list[int],
        *,
        actor: str,
        change_id: str | None = None,
        reason: str | None = None,
    ) -> AccountSnapshot:
        """New warning thresholds (percent of the limit; the 100 % stop always notifies)."""
        problem = alerts_problem(percents)
        if problem is not None:
            raise ApiError(422, "invalid_alerts", problem)
        change = AlertsChange(sorted(percents), actor, change_id or str(uuid.uuid4()), reason)
        return await self._change(account_id, self.dispatcher.change_alerts, change)

    async def _change(
        self,
        account_id: str,
        send: Callable[[AccountWorkflowInput, T], Awaitable[AccountSnapshot]],
        change: T,
    ) -> AccountSnapshot:
        start_input = await self.load(account_id)
        try:
            snapshot = await send(start_input, change)
        except WorkflowRejected as err:
            raise ApiError(REJECTION_STATUS.get(err.code, 422), err.code, err.detail) from err
        except DispatchTimeout as err:
            raise unavailable(str(err), err.retry_after) from err
        # The account row follows a moment later (the workflow's settings outbox): until
        # then a fresh load would read the old plan back, so keep the live one.
        plan = self.catalog.get(snapshot.plan, start_input.plan)
        self._cache[account_id] = (
            time.monotonic(),
            replace(
                start_input,
                plan=plan,
                settings=ExtraMinutesSettings(
                    snapshot.enabled, snapshot.limit_cents, snapshot.limit_minutes
                ),
                alert_percents=list(snapshot.alert_percents),
                # A run of an older version reports no version (0): keep the row's.
                settings_version=max(start_input.settings_version, snapshot.settings_version),
            ),
        )
        return snapshot

    async def alert_recipients(self, account_id: str) -> list[str]:
        await self.load(account_id)

        def fetch() -> str:
            with session_scope(self._db) as session:
                account = session.get(Account, account_id)
                return account.alert_recipients if account else ""

        return split_recipients(await run_in_threadpool(fetch))

    async def set_alert_recipients(self, account_id: str, recipients: list[str]) -> list[str]:
        """The extra addresses every notice also goes to (database only: the notification
        activity reads them when it sends). Validated, lower-cased, each once, at most 5."""
        await self.load(account_id)
        cleaned = clean_recipients(recipients)

        def store() -> None:
            with session_scope(self._db) as session:
                account = session.get(Account, account_id)
                if account is None:
                    raise ApiError(404, "unknown_account", f"no account {account_id!r}")
                account.alert_recipients = ",".join(cleaned)
                session.add(account)
                session.commit()

        await run_in_threadpool(store)
        return cleaned

    async def snapshot(self, account_id: str) -> AccountSnapshot:
        start_input = await self.load(account_id)
        try:
            return await self.dispatcher.snapshot(start_input)
        except DispatchTimeout as err:
            raise unavailable(str(err), err.retry_after) from err

    async def notifications(self, account_id: str) -> list[Notification]:
        await self.load(account_id)

        def fetch() -> list[Notification]:
            with session_scope(self._db) as session:
                return list(
                    session.exec(
                        select(Notification)
                        .where(Notification.account_id == account_id)
                        .order_by(col(Notification.sent_at), col(Notification.id))
                    )
                )

        return await run_in_threadpool(fetch)


# --- alert settings -------------------------------------------------------------------

MAX_ALERT_RECIPIENTS = 5


def parse_percents(text: str | None) -> list[int]:
    """The account row's "50,75,90" (empty: no warnings, only the stop)."""
    if text is None:
        return [90]
    return sorted({int(part) for part in text.split(",") if part.strip().isdigit()})


def split_recipients(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def clean_recipients(recipients: list[str]) -> list[str]:
    """Deliverable addresses (email-validator, no DNS look-up), lower-cased, each once."""
    if len(recipients) > MAX_ALERT_RECIPIENTS:
        raise ApiError(
            422, "invalid_recipients", f"at most {MAX_ALERT_RECIPIENTS} extra recipients"
        )
    cleaned: list[str] = []
    for given in recipients:
        try:
            address = validate_email(given.strip(), check_deliverability=False).normalized
        except (EmailNotValidError, AttributeError) as err:
            raise ApiError(
                422, "invalid_recipients", f"not an email address: {str(given)[:80]!r}"
            ) from err
        if address.lower() not in cleaned:
            cleaned.append(address.lower())
    return cleaned
