"""The Temporal frontend and the API's edge, attacked as the issue did.

* Somebody who reaches the Temporal frontend (7233) with the CLI or a plain SDK client
  sends Updates and signals without the payload key: they are rejected or dropped, the
  account's state does not move, and the workflow goes on answering the API.
* Every state-changing Update names a known actor.
* ``X-Forwarded-For`` counts only from a configured proxy; CORS only on ``/codec``; the
  ``Host`` header is checked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import httpx
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from billing.rules import ExtraMinutesSettings
from overtime.settings import Settings
from overtime.temporal import ENCODING, KEY_ID_HEADER
from tests.conftest import Api, start_api, stop_api
from workflows.account import AccountWorkflow
from workflows.types import (
    PaymentMethodChange,
    SettingsChange,
    TelephonyBatch,
    TelephonyRequest,
    workflow_id_for,
)

UI_ORIGIN = "http://127.0.0.1:8233"


class ForgedCiphertext(PayloadCodec):
    """Payloads that claim to be encrypted with the real key id but are not."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id.encode()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [
            Payload(
                metadata={"encoding": ENCODING, KEY_ID_HEADER: self.key_id},
                data=os.urandom(12) + p.SerializeToString(),
            )
            for p in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


def plain_client(env: WorkflowEnvironment, settings: Settings) -> Client:
    """What `temporal workflow update` is: the frontend with the default converter."""
    return Client(env.client.service_client, namespace=settings.temporal_namespace)


async def no_failed_workflow_task(handle: WorkflowHandle) -> None:
    history = await handle.fetch_history()
    failed = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    ]
    assert not failed, failed[0]


async def test_plaintext_updates_are_rejected_and_change_nothing(
    api: Api, temporal_env: WorkflowEnvironment
) -> None:
    account = await api.create_account()
    await api.authorize(account, "before")
    before = await api.state(account)
    assert before["payment_method_on_file"] is False

    handle = plain_client(temporal_env, api.settings).get_workflow_handle(workflow_id_for(account))
    attempts = [
        (
            "change_settings",
            {
                "settings": {"enabled": True, "limit_cents": 1_000_000, "limit_minutes": None},
                "actor": "admin",
            },
        ),
        ("change_settings", {"settings": {"enabled": False}, "actor": "admin"}),
        ("payment_method", {"on_file": True}),
        ("payment_method", {"on_file": True, "actor": "admin"}),
        ("telephony", {"requests": [{"kind": "authorize", "call_id": "free-call"}]}),
    ]
    for name, body in attempts:
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(name, body)
        assert "Failed decoding arguments" in str(refused.value.cause), (name, refused.value)
    # An Update without any argument is rejected too (its validator cannot be called).
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("payment_method")

    after = await api.state(account)
    assert after == {**before, "reserved_seconds": after["reserved_seconds"]}
    history = await handle.fetch_history()
    accepted = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert len(accepted) == 1  # the API's own authorisation only: nothing was recorded
    await no_failed_workflow_task(handle)

    # The account goes on working through the API.
    assert (await api.authorize(account, "after"))["allowed"] is True
    assert (await api.add_payment_method(account)).status_code == 200
    enabled = await api.enable(account, limit_cents=5000)
    assert enabled.status_code == 200, enabled.text
    assert (await api.state(account))["limit_cents"] == 5000


async def test_plaintext_empty_and_forged_signals_change_nothing(
    api: Api, temporal_env: WorkflowEnvironment
) -> None:
    account = await api.create_account()
    await api.authorize(account, "c1")
    workflow_id = workflow_id_for(account)
    plain = plain_client(temporal_env, api.settings).get_workflow_handle(workflow_id)
    await plain.signal("invoice_overdue", {"invoice_key": "invoice-x", "overdue": True})
    await plain.signal("payment_overdue", True)
    # No argument at all: the encryption cannot refuse what is not there; the handlers
    # ignore it instead of raising (which would fail every workflow task from now on).
    await plain.signal("invoice_overdue")
    await plain.signal("payment_overdue")
    await plain.signal("abandon")
    forged = Client(
        temporal_env.client.service_client,
        namespace=api.settings.temporal_namespace,
        data_converter=DataConverter(payload_codec=ForgedCiphertext(api.settings.payload_key_id)),
    ).get_workflow_handle(workflow_id)
    await forged.signal("invoice_overdue", {"invoice_key": "invoice-y", "overdue": True})
    with pytest.raises(WorkflowUpdateFailedError):
        await forged.execute_update("payment_method", {"on_file": True, "actor": "admin"})

    # The next request is handled after those signals (one workflow, in order).
    assert (await api.authorize(account, "c2"))["allowed"] is True
    state = await api.state(account)
    assert state["payment_overdue"] is False
    assert state["payment_method_on_file"] is False
    assert state["accepting_calls"] is True
    await no_failed_workflow_task(plain)


@pytest.mark.parametrize(
    "actor",
    ["", "mallory", "customer:", "customer:not-an-email", "admin:a b@example.com", "telephony"],
)
async def test_changes_must_name_a_known_actor(
    api: Api, temporal_client: Client, actor: str
) -> None:
    account = await api.create_account()
    await api.authorize(account, "c1")
    handle = temporal_client.get_workflow_handle(workflow_id_for(account))
    for update, change in (
        (AccountWorkflow.change_settings, SettingsChange(ExtraMinutesSettings(False), actor)),
        (AccountWorkflow.payment_method, PaymentMethodChange(True, actor)),
    ):
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(update, change)  # type: ignore[arg-type]
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "invalid_actor", cause
    assert (await api.state(account))["payment_method_on_file"] is False


async def test_known_actors_are_accepted_and_telephony_is_telephony_only(
    api: Api, temporal_client: Client
) -> None:
    account = await api.create_account()
    await api.authorize(account, "c1")
    handle = temporal_client.get_workflow_handle(workflow_id_for(account))
    for actor in ("admin", "system", f"customer:{account}@example.com", "admin:ops@example.com"):
        await handle.execute_update(
            AccountWorkflow.change_settings, SettingsChange(ExtraMinutesSettings(False), actor)
        )
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            AccountWorkflow.telephony,
            TelephonyBatch([TelephonyRequest("authorize", "c2")], actor="admin"),
        )
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == "invalid_actor"
    [answer] = await handle.execute_update(
        AccountWorkflow.telephony, TelephonyBatch([TelephonyRequest("authorize", "c3")])
    )
    assert answer.allowed is True


# --- the API's edge ----------------------------------------------------------------------


def client_from(api: Api, local_address: str, **headers: str) -> httpx.AsyncClient:
    """A client whose connections leave from ``local_address`` (any 127.x address is
    this machine; the API tells them apart)."""
    return httpx.AsyncClient(
        base_url=api.base_url,
        transport=httpx.AsyncHTTPTransport(local_address=local_address),
        headers=headers,
        timeout=30,
    )


async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    api: Api, temporal_client: Client
) -> None:
    proxied = api.settings.model_copy(
        update={"trusted_proxies": ["127.0.0.2/32"], "codec_allow_loopback": True}
    )
    server, task, proxied_api = await start_api(proxied, temporal_client)
    body = b'{"payloads": []}'
    try:
        # The proxy at 127.0.0.2 forwards a remote client that claims to be loopback: the
        # API believes the address the proxy saw (the last one), not the client's claim.
        async with client_from(proxied_api, "127.0.0.2") as proxy:
            spoofed = await proxy.post(
                "/codec/decode",
                content=body,
                headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.9"},
            )
            assert spoofed.status_code == 401, spoofed.text
            remote = await proxy.post(
                "/codec/decode", content=body, headers={"X-Forwarded-For": "203.0.113.9"}
            )
            assert remote.status_code == 401
            # Without a forwarded address, the proxy's own loopback address is the client.
            assert (await proxy.post("/codec/decode", content=body)).status_code == 200
        # A peer that is not a configured proxy: its header is ignored, its own address
        # (loopback here) is what counts.
        async with client_from(proxied_api, "127.0.0.3") as direct:
            claimed = await direct.post(
                "/codec/decode", content=body, headers={"X-Forwarded-For": "203.0.113.9"}
            )
            assert claimed.status_code == 200
    finally:
        await stop_api(server, task, proxied_api)

    # No proxies configured (the default): the header is ignored from everyone, and
    # uvicorn's own proxy handling (which trusts 127.0.0.1) is off.
    lenient = api.settings.model_copy(update={"codec_allow_loopback": True})
    server, task, plain_api = await start_api(lenient, temporal_client)
    try:
        async with client_from(plain_api, "127.0.0.1") as direct:
            ignored = await direct.post(
                "/codec/decode", content=body, headers={"X-Forwarded-For": "203.0.113.9"}
            )
            assert ignored.status_code == 200
    finally:
        await stop_api(server, task, plain_api)


async def test_cors_only_on_codec(api: Api) -> None:
    preflight = {"Origin": UI_ORIGIN, "Access-Control-Request-Method": "POST"}
    codec = await api.anonymous.options("/codec/decode", headers=preflight)
    assert codec.status_code == 200
    assert codec.headers.get("access-control-allow-origin") == UI_ORIGIN
    for path in ("/v1/plans", "/login", "/v1/accounts"):
        answer = await api.anonymous.options(path, headers=preflight)
        assert "access-control-allow-origin" not in answer.headers, path
    for path in ("/v1/plans", "/login"):
        answer = await api.anonymous.get(path, headers={"Origin": UI_ORIGIN})
        assert answer.status_code == 200, path
        assert "access-control-allow-origin" not in answer.headers, path
    # The codec's own answers carry it (the UI reads them); another origin gets none.
    decoded = await api.admin.post(
        "/codec/decode", content=b'{"payloads": []}', headers={"Origin": UI_ORIGIN}
    )
    assert decoded.headers.get("access-control-allow-origin") == UI_ORIGIN
    evil = await api.anonymous.options(
        "/codec/decode",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in evil.headers


async def test_unknown_host_is_refused(api: Api) -> None:
    port = api.base_url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "[::2]"):
        answer = await api.anonymous.get("/v1/plans", headers={"Host": host})
        assert answer.status_code == 400, host
        assert answer.json()["error"] == "invalid_host"
    # The rebinding case: the codec server is not reachable under a foreign name either.
    codec = await api.admin.post(
        "/codec/decode", content=b'{"payloads": []}', headers={"Host": "evil.example"}
    )
    assert codec.status_code == 400
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
        assert (await api.anonymous.get("/v1/plans", headers={"Host": host})).status_code == 200
