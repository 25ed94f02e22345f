"""The HTTP API against generated input: Schemathesis over /openapi.json, with auth on.

Every operation in the published schema gets requests generated from that schema, valid
and invalid (Schemathesis' positive and negative modes), sent with the token the
endpoint wants. Whatever comes in: no 5xx, every error in the documented shape
``{"error": CODE, "detail": TEXT}``, every status code and every response body the one
the schema documents. Without a token, or with the other one, every protected operation
answers 401 / 403 in the same shape. Then the inputs a fuzzer does not think of:
bodies of 10 MB, JSON nested ten thousand deep, numbers of 400 digits.

Schemathesis sends with ``requests`` (blocking), so it runs on a thread while this event
loop serves the API.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
import schemathesis.specs.openapi.schemas  # imported at collection: see below
from hypothesis import HealthCheck
from schemathesis import checks
from schemathesis.generation import GenerationMode
from sqlmodel import select

from overtime.db import session_scope
from overtime.models import UsageEntry
from tests.conftest import ADMIN_TOKEN, TELEPHONY_TOKEN, Api

# schemathesis imports its OpenAPI machinery lazily, on the first ``from_dict``: under
# pytest's assertion rewriting that import, deep inside the running test, once failed with
# CPython 3.11's "AST constructor recursion depth mismatch". The import above does it at
# collection instead.

# Public operations; everything else needs a token.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("GET", "/v1/plans"),
    ("POST", "/v1/stripe/webhook"),
    # The mobile app's sign-in: what it checks is the email and password in the body.
    ("POST", "/v1/auth/token"),
    ("POST", "/v1/auth/revoke"),
}
# Starts a month-end close workflow that waits hours for periods to close: not for a fuzzer.
SKIPPED = {("POST", "/v1/reports/close/{period}")}
EXAMPLES = 25  # per operation and generation mode


def token_for(path: str) -> str:
    return TELEPHONY_TOKEN if path.startswith("/v1/calls/") else ADMIN_TOKEN


def assert_error_shape(status: int, body: bytes, where: str) -> None:
    assert status < 500, f"{where}: {status} {body[:300]!r}"
    if status >= 400:
        payload = json.loads(body)
        # {"error", "detail"}, and a few errors say more (web_app_only's "url", a
        # throttle's "reason" and "retry_after").
        assert isinstance(payload, dict) and {"error", "detail"} <= set(payload), (where, payload)
        assert set(payload) <= {"error", "detail", "url", "reason", "retry_after"}, (where, payload)
        assert isinstance(payload["error"], str) and payload["error"], (where, payload)
        assert isinstance(payload["detail"], str) and payload["detail"], (where, payload)


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]

# Where the published schema and the API disagree today (found by this test; reported,
# starter/ is not ours to change). Each gap relaxes one check for exactly those answers;
# delete an entry once the schema is fixed and the test holds the line again.
#
# 1. A body that is not decodable (bytes that are not UTF-8 JSON) is a 400 "http_error"
#    from FastAPI, not the documented 422 "invalid_request" (README: malformed JSON is 422).
PARSE_ERROR = {"error": "http_error", "detail": "There was an error parsing the body"}
# 2. These routes document FastAPI's default 422 body (``detail`` a list of objects) while
#    the API sends {"error", "detail": TEXT} like everywhere else (no ``responses=`` with
#    ErrorOut on their routers), and do not document their 401 / 403 / 404.
DEFAULT_422_DOCUMENTED = {
    ("GET", "/v1/reports/close/{period}"),
    ("PUT", "/v1/accounts/{account_id}/password"),
}
UNDOCUMENTED_404 = {("PUT", "/v1/accounts/{account_id}/password")}


def checks_for(key: tuple[str, str], status: int, body: bytes) -> list[Any]:
    relaxed: set[Any] = set()
    if status == 400 and json.loads(body) == PARSE_ERROR:
        relaxed.add(checks.status_code_conformance)
    if status == 422 and key in DEFAULT_422_DOCUMENTED:
        relaxed.add(checks.response_schema_conformance)
    if status == 404 and key in UNDOCUMENTED_404:
        relaxed.add(checks.status_code_conformance)
    return [check for check in CHECKS if check not in relaxed]


def check_operation(
    operation: Any, mode: GenerationMode, headers: dict[str, str], base_url: str, account: str
) -> set[int]:
    """Generated cases for one operation in one mode; returns the statuses seen."""
    statuses: set[int] = set()
    key = (operation.method.upper(), operation.path)
    where = f"{key[0]} {key[1]} ({mode.value})"

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        if mode is GenerationMode.POSITIVE:
            # Valid input should reach the workflows, not stop at "unknown account".
            if case.path_parameters and "account_id" in case.path_parameters:
                case.path_parameters["account_id"] = account
            if isinstance(case.body, dict) and key[1].startswith("/v1/calls/"):
                case.body["account_id"] = account
            if isinstance(case.body, dict) and key == ("POST", "/v1/accounts"):
                case.body["plan"] = "starter"
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        statuses.add(response.status_code)
        assert_error_shape(response.status_code, response.content, where)
        case.validate_response(
            response,
            checks=checks_for(key, response.status_code, response.content),
            headers=headers,
        )

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # Nothing to make invalid (no body, any string is a valid path segment).
        assert mode is GenerationMode.NEGATIVE, where
    return statuses


def fuzz(spec: dict[str, Any], base_url: str, account: str) -> list[str]:
    """Every operation, valid and invalid input; returns what each answered."""
    schema = schemathesis.openapi.from_dict(spec)
    seen: list[str] = []
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key in SKIPPED:
            continue
        headers = {} if key in PUBLIC else {"Authorization": f"Bearer {token_for(operation.path)}"}
        statuses: set[int] = set()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                statuses |= check_operation(operation, mode, headers, base_url, account)
            except (Exception, BaseExceptionGroup) as err:  # every operation's, not the first
                failures.append(f"{key} {mode.value}: {err}"[:1500])
        seen.append(f"{key[0]} {key[1]}: {sorted(statuses)}")
    assert not failures, "\n\n".join(failures)
    return seen


async def test_every_operation_survives_generated_input(api: Api) -> None:
    account = await api.create_account()
    spec = (await api.anonymous.get("/openapi.json")).json()
    seen = await asyncio.to_thread(fuzz, spec, api.base_url, account)
    assert len(seen) >= 14, seen  # every documented operation was exercised
    print("\n".join(seen))
    assert any(line.startswith("POST /v1/calls/usage") and "200" in line for line in seen)

    # Whatever was sent, the account's books add up: the ledger equals the workflow.
    state = await api.state(account)
    with session_scope(api.settings.resolved_database_url()) as session:
        rows = session.exec(select(UsageEntry).where(UsageEntry.account_id == account)).all()
    assert (
        sum(r.billed_included_seconds + r.billed_extra_seconds for r in rows)
        == (state["used_seconds"])
    )
    assert state["extra_seconds"] <= state["extra_allowed_seconds"] or not state["enabled"]


async def test_tokens_are_required_on_every_protected_operation(api: Api) -> None:
    spec = (await api.anonymous.get("/openapi.json")).json()
    checked = 0
    for path, operations in spec["paths"].items():
        for method in operations:
            key = (method.upper(), path)
            if key in PUBLIC or path.startswith("/openapi"):
                continue
            url = path.replace("{account_id}", "some-account").replace("{period}", "2026-11")
            other = ADMIN_TOKEN if token_for(path) == TELEPHONY_TOKEN else TELEPHONY_TOKEN
            # The mobile app's routes answer an unknown bearer token as OAuth 2.0 clients
            # expect (RFC 6750: 401 invalid_token, sign in again); the others 403.
            unknown = 401 if path.startswith("/v1/me") else 403
            for headers, status in (
                ({}, 401),
                ({"Authorization": "Bearer not-a-token"}, unknown),
                ({"Authorization": f"Bearer {other}"}, 403),
                ({"Authorization": f"Basic {ADMIN_TOKEN}"}, 401),
            ):
                response = await api.anonymous.request(
                    method.upper(), url, headers=headers, json={}
                )
                assert response.status_code == status, (key, headers, response.text)
                assert_error_shape(response.status_code, response.content, f"{key}")
            checked += 1
    assert checked >= 12


# --- what a fuzzer does not send ---------------------------------------------------------


@pytest.fixture
async def account(api: Api) -> str:
    return await api.create_account()


async def test_absurd_numbers_are_refused(api: Api, account: str) -> None:
    for seconds in (10**400, -(10**400), 2**63, 2**64 + 1):
        response = await api.telephony.post(
            "/v1/calls/usage", json={"account_id": account, "call_id": "n", "seconds": seconds}
        )
        assert response.status_code == 422, (seconds, response.text)
        assert_error_shape(response.status_code, response.content, str(seconds))
    for raw in (b"1e400", b"NaN", b"Infinity", b"-0.0", b"1.0"):
        body = b'{"account_id":"%s","call_id":"n","seconds":%s}' % (account.encode(), raw)
        response = await api.telephony.post(
            "/v1/calls/usage", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, (raw, response.text)
        assert_error_shape(response.status_code, response.content, raw.decode())
    for limit in ({"limit_cents": 10**400}, {"limit_minutes": 2**63}, {"limit_cents": 2**31}):
        response = await api.admin.put(
            f"/v1/accounts/{account}/extra-minutes", json={"enabled": True, **limit}
        )
        assert response.status_code == 422, (limit, response.text)
        assert_error_shape(response.status_code, response.content, str(limit))
    assert (await api.state(account))["used_seconds"] == 0


async def test_deeply_nested_json_is_refused_not_a_crash(api: Api, account: str) -> None:
    for depth in (1_000, 100_000):
        body = b"[" * depth + b"]" * depth
        response = await api.telephony.post(
            "/v1/calls/usage", content=body, headers={"Content-Type": "application/json"}
        )
        # 400: FastAPI cannot parse it (RecursionError inside json); the shape holds.
        assert response.status_code in (400, 422), (depth, response.text[:200])
        assert_error_shape(response.status_code, response.content, f"depth {depth}")


async def test_large_strings_in_fields_are_refused(api: Api, account: str) -> None:
    huge = "a" * 1_000_000
    response = await api.telephony.post(
        "/v1/calls/authorize", json={"account_id": account, "call_id": huge}
    )
    assert response.status_code == 422
    assert_error_shape(response.status_code, response.content, "1 MB call id")
    response = await api.admin.post(
        "/v1/accounts",
        json={"account_id": "x", "email": f"{huge}@example.com", "plan": "starter"},
    )
    assert response.status_code == 422
    assert_error_shape(response.status_code, response.content, "1 MB email")


TEN_MB = 10 * 1024 * 1024


async def test_ten_megabyte_bodies_are_refused_before_they_are_read(api: Api, account: str) -> None:
    body = json.dumps(
        {"account_id": account, "call_id": "big", "seconds": 1, "pad": "x" * TEN_MB}
    ).encode()
    response = await api.telephony.post(
        "/v1/calls/usage", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.status_code
    assert response.json()["error"] == "body_too_large"


async def test_ten_megabyte_bodies_record_nothing_and_keep_the_error_shape(
    api: Api, account: str
) -> None:
    """What the API does today with 10 MB: refuses it (422) in the documented shape."""
    padded = json.dumps(
        {"account_id": account, "call_id": "big", "seconds": 1, "pad": "x" * TEN_MB}
    ).encode()
    for path, body in (
        ("/v1/calls/usage", padded),
        ("/v1/calls/authorize", b"x" * TEN_MB),
        ("/v1/calls/usage", b"[" + b"1," * (TEN_MB // 2) + b"1]"),
    ):
        response = await api.telephony.post(
            path, content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code in (413, 422), (path, response.status_code)
        assert_error_shape(response.status_code, response.content, path)
    state = await api.state(account)
    assert (state["used_seconds"], state["reserved_seconds"]) == (0, 0)
