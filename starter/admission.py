"""Admission control for telephony requests: a bounded queue, the rest shed at once.

Every telephony request waits for its account workflow (starter/dispatcher.py), at most
``telephony_timeout_seconds``. Under a burst beyond what Temporal and the worker can
answer, letting every request wait means every caller waits the whole timeout and most
still get a 503; the waiting requests also hold memory, sockets and the event loop's
attention from the ones that could be answered. So each API process admits at most
``admission_max_pending`` telephony requests at a time, and at most
``admission_max_pending_per_account`` for one account (one hot account must not take
the whole process's room from the others). A request beyond either bound is answered
at once: 503 ``overloaded`` with ``Retry-After``, before anything reaches the workflow,
so a shed authorisation reserved nothing and a shed usage report was not recorded (the
telephony backend retries it with the same ``request_id``; it is counted once).

The counters are plain integers: the event loop is the only thread that touches them,
and admission is decided synchronously, before the request first awaits anything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from temporalio.common import MetricMeter

from overtime.observability import REQUESTS_SHED, count
from overtime.settings import Settings
from starter.errors import ApiError

log = logging.getLogger(__name__)

Bound = Literal["process", "account"]


class Overloaded(ApiError):
    """503 ``overloaded``: shed before it was queued; nothing was recorded."""

    def __init__(self, bound: Bound, detail: str, retry_after: int) -> None:
        super().__init__(503, "overloaded", detail, headers={"Retry-After": str(retry_after)})
        self.bound = bound


class Admission:
    """The telephony requests this process is answering, overall and per account."""

    def __init__(self, max_pending: int, max_pending_per_account: int, retry_after: int) -> None:
        self.max_pending = max_pending
        self.max_pending_per_account = max_pending_per_account
        self.retry_after = retry_after
        self.pending = 0
        self._per_account: dict[str, int] = {}
        # Instruments (tests): requests shed, by bound.
        self.shed: dict[Bound, int] = {"process": 0, "account": 0}

    @classmethod
    def from_settings(cls, settings: Settings) -> Admission:
        return cls(
            settings.admission_max_pending,
            settings.admission_max_pending_per_account,
            settings.admission_retry_after_seconds,
        )

    @contextmanager
    def admit(self, account_id: str, kind: str, meter: MetricMeter | None = None) -> Iterator[None]:
        """Hold a place for one request of ``kind`` while the block runs, or raise
        :class:`Overloaded` without holding anything."""
        account_pending = self._per_account.get(account_id, 0)
        if self.pending >= self.max_pending:
            raise self._refuse(
                "process",
                kind,
                account_id,
                f"this API process is answering {self.pending} telephony requests "
                f"(at most {self.max_pending})",
                meter,
            )
        if account_pending >= self.max_pending_per_account:
            raise self._refuse(
                "account",
                kind,
                account_id,
                f"account {account_id!r} has {account_pending} telephony requests "
                f"waiting (at most {self.max_pending_per_account})",
                meter,
            )
        self.pending += 1
        self._per_account[account_id] = account_pending + 1
        try:
            yield
        finally:
            self.pending -= 1
            left = self._per_account[account_id] - 1
            if left:
                self._per_account[account_id] = left
            else:
                # Forgotten at zero: arbitrary account ids must not grow the table.
                del self._per_account[account_id]

    def _refuse(
        self,
        bound: Bound,
        kind: str,
        account_id: str,
        why: str,
        meter: MetricMeter | None,
    ) -> Overloaded:
        self.shed[bound] += 1
        if meter is not None:
            count(meter, REQUESTS_SHED, bound=bound, kind=kind)
        # Debug only: a burst sheds thousands of requests; the metric is what to watch.
        log.debug("request shed", extra={"account_id": account_id, "bound": bound, "kind": kind})
        return Overloaded(
            bound,
            f"{why}; nothing was recorded: retry after Retry-After seconds with the same "
            "request_id",
            self.retry_after,
        )
