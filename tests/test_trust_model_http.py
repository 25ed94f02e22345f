"""The telephony model of tests/test_account_state_property.py, against the real stack.

A few short hypothesis runs of a telephony backend over HTTP (calls asking, re-asking,
ending honestly, over-reporting, repeating reports, re-asking after their report; extra
minutes switched on and off and limits moved with calls in flight). Every authorisation
answer and every report's ``duplicate`` must be what :class:`ModelAccount` says, and
``GET /state`` must show the model's totals after every step; at the end of each run the
ledger rows and notices must match too.

Grants here are 300 s with 120 s of grace and the whole run takes seconds, so nothing
lapses: the model's clock stands still. The state machine runs in a thread (hypothesis
is synchronous); the API and the worker keep running on the test's event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlmodel import select

from billing.account_state import CONFIRMATIONS
from overtime.db import session_scope
from overtime.models import UsageEntry
from tests.conftest import Api
from tests.telephony_model import ModelAccount

STARTER_INCLUDED = 6000
PRICE = 39
NOW = datetime(2026, 1, 1, tzinfo=UTC)  # the model's clock: nothing lapses in a run


class Http:
    """A synchronous telephony backend and admin (the machine runs in a thread)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.telephony = httpx.Client(
            base_url=api.base_url,
            headers={"Authorization": f"Bearer {api.settings.telephony_token}"},
            timeout=30,
        )
        self.admin = httpx.Client(
            base_url=api.base_url,
            headers={"Authorization": f"Bearer {api.settings.admin_token}"},
            timeout=30,
        )

    def close(self) -> None:
        self.telephony.close()
        self.admin.close()

    def _telephony(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "request_id": f"m-{uuid.uuid4().hex[:16]}"}
        for _ in range(100):
            response = self.telephony.post(path, json=body)
            if response.status_code != 503:
                assert response.status_code == 200, (path, body, response.text)
                return response.json()
            time.sleep(0.1)
        raise AssertionError(f"{path} unavailable for good")

    def authorize(self, account: str, call_id: str) -> dict[str, Any]:
        return self._telephony("/v1/calls/authorize", {"account_id": account, "call_id": call_id})

    def usage(self, account: str, call_id: str, seconds: int) -> dict[str, Any]:
        return self._telephony(
            "/v1/calls/usage", {"account_id": account, "call_id": call_id, "seconds": seconds}
        )

    def put_settings(self, account: str, body: dict[str, Any]) -> None:
        response = self.admin.put(f"/v1/accounts/{account}/extra-minutes", json=body)
        assert response.status_code == 200, response.text

    def state(self, account: str) -> dict[str, Any]:
        response = self.admin.get(f"/v1/accounts/{account}/state")
        assert response.status_code == 200, response.text
        return response.json()

    def notice_kinds(self, account: str) -> list[str]:
        response = self.admin.get(f"/v1/accounts/{account}/notifications")
        assert response.status_code == 200, response.text
        # The model knows the limit notices; the confirmations (payment method added,
        # switched on) are checked in tests/test_scenarios.py.
        return [n["kind"] for n in response.json() if n["kind"] not in CONFIRMATIONS]

    def create_account(self) -> str:
        account = f"acct-{uuid.uuid4().hex[:12]}"
        response = self.admin.post(
            "/v1/accounts",
            json={"account_id": account, "email": f"{account}@example.com", "plan": "starter"},
        )
        assert response.status_code == 201, response.text
        attached = self.admin.post(
            f"/v1/accounts/{account}/payment-method", json={"payment_method_id": "pm_card_visa"}
        )
        assert attached.status_code == 200, attached.text
        return account


def eventually_sync(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


class HttpTelephonyMachine(RuleBasedStateMachine):
    http: ClassVar[Http]

    def __init__(self) -> None:
        super().__init__()
        self.account = self.http.create_account()
        self.model = ModelAccount(
            included_seconds=STARTER_INCLUDED,
            price_cents=PRICE,
            chunk=self.http.api.settings.grant_chunk_seconds,
            grace=self.http.api.settings.grant_grace_seconds,
            period_start=NOW,
            period_end=NOW,
        )
        self.numbers = itertools.count()
        self.known: list[str] = []

    @initialize(included_left=st.sampled_from([0, 150, 700]))
    def use_included_minutes(self, included_left: int) -> None:
        """Most of the included minutes are gone already (honest calls of 300 s)."""
        used = STARTER_INCLUDED - included_left
        for n in range(-(-used // 300)):
            seconds = min(300, used - n * 300)
            self._ask(f"warm-{n}")
            self._report(f"warm-{n}", seconds)

    # --- the two sides of every step ----------------------------------------------------

    def _ask(self, call: str) -> None:
        answer = self.http.authorize(self.account, call)
        expected = self.model.authorize(call, NOW)
        wanted: dict[str, Any] = (
            {"allowed": True, "granted_seconds": expected.granted}
            if expected.allowed
            else {"allowed": False, "reason": expected.reason}
        )
        assert answer == wanted, (call, answer, wanted)

    def _report(self, call: str, seconds: int) -> None:
        answer = self.http.usage(self.account, call, seconds)
        expected = self.model.report(call, seconds, NOW)
        assert answer == {"recorded": True, "duplicate": expected is None}, (call, answer)

    def _new_call(self) -> str:
        call = f"call-{next(self.numbers)}"
        self.known.append(call)
        return call

    # --- telephony ------------------------------------------------------------------------

    @rule()
    def call_starts(self) -> None:
        self._ask(self._new_call())

    @precondition(lambda self: bool(self.model.running))
    @rule(data=st.data())
    def call_reasks(self, data: st.DataObject) -> None:
        self._ask(data.draw(st.sampled_from(sorted(self.model.running))))

    @precondition(lambda self: bool(self.model.running))
    @rule(data=st.data(), fraction=st.sampled_from([0.0, 0.5, 1.0]))
    def call_ends(self, data: st.DataObject, fraction: float) -> None:
        call = data.draw(st.sampled_from(sorted(self.model.running)))
        self._report(call, int(self.model.running[call].granted * fraction))

    @precondition(lambda self: bool(self.known))
    @rule(data=st.data(), extra=st.sampled_from([0, 1, 100]))
    def report_again_or_too_much(self, data: st.DataObject, extra: int) -> None:
        """A repeated report, or one beyond the grant, or from a call that never asked."""
        call = data.draw(st.sampled_from([*self.known, "never-asked"]))
        if call == "never-asked":
            call = self._new_call()
        grant = self.model.running.get(call)
        self._report(call, (grant.granted if grant else 0) + extra)

    @precondition(lambda self: bool(self.model.settled))
    @rule(data=st.data())
    def settled_call_asks(self, data: st.DataObject) -> None:
        self._ask(data.draw(st.sampled_from(sorted(self.model.settled))))

    # --- settings -------------------------------------------------------------------------

    @rule(minutes=st.integers(1, 8))
    def limit_set(self, minutes: int) -> None:
        self.http.put_settings(self.account, {"enabled": True, "limit_minutes": minutes})
        self.model.change_settings(True, minutes * 60)

    @precondition(lambda self: self.model.enabled)
    @rule()
    def switched_off(self) -> None:
        self.http.put_settings(self.account, {"enabled": False})
        self.model.change_settings(False, 0)

    # --- checks ---------------------------------------------------------------------------

    @invariant()
    def state_shows_the_models_totals(self) -> None:
        state = self.http.state(self.account)
        model = self.model
        got = {k: state[k] for k in ("used_seconds", "extra_seconds", "reserved_seconds")}
        got |= {k: state[k] for k in ("extra_cost_cents", "accepting_calls", "stop_reason")}
        assert got == {
            "used_seconds": model.included_used + model.extra_used,
            "extra_seconds": model.extra_used,
            "reserved_seconds": model.held(NOW),
            "extra_cost_cents": (model.extra_used * PRICE * 2 + 60) // 120,
            "accepting_calls": model.accepting,
            "stop_reason": model.stop_reason,
        }

    def teardown(self) -> None:
        db = self.http.api.settings.resolved_database_url()
        wanted = sorted((r.call_id, r.included, r.extra, r.excess) for r in self.model.rows)

        def ledger() -> bool:
            with session_scope(db) as session:
                rows = session.exec(select(UsageEntry).where(UsageEntry.account_id == self.account))
                got = sorted(
                    (r.call_id, r.billed_included_seconds, r.billed_extra_seconds, r.excess_seconds)
                    for r in rows
                )
            assert got == wanted
            return True

        eventually_sync(ledger)
        kinds = Counter(key.split(":")[0] for _, key in self.model.notices)
        eventually_sync(lambda: Counter(self.http.notice_kinds(self.account)) == kinds)


async def test_the_telephony_model_holds_over_http(api: Api) -> None:
    HttpTelephonyMachine.http = Http(api)
    try:
        await asyncio.to_thread(
            run_state_machine_as_test,
            HttpTelephonyMachine,
            settings=settings(
                max_examples=5,
                stateful_step_count=25,
                deadline=None,
                database=None,
                # No shrinking over HTTP: the failing run is reported as it was played.
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        HttpTelephonyMachine.http.close()
