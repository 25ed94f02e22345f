"""Personal data never reaches Temporal in the clear; the codec server decodes for admins."""

from __future__ import annotations

import base64

from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from overtime.temporal import ENCODING
from tests.conftest import Api, start_api, stop_api
from workflows.types import workflow_id_for


async def test_workflow_payloads_are_encrypted(api: Api, temporal_env: WorkflowEnvironment) -> None:
    email = "geheim.kunde@example.com"
    account = await api.create_account(email=email)
    await api.authorize(account, "c1")
    # Read the history with a client that has no codec: what the server stores.
    raw = await temporal_env.client.get_workflow_handle(workflow_id_for(account)).fetch_history()
    started = raw.events[0].workflow_execution_started_event_attributes
    payload = started.input.payloads[0]
    assert payload.metadata["encoding"] == ENCODING
    assert email.encode() not in raw.to_json().encode()
    assert b"geheim" not in payload.data

    # The codec server turns it back for an admin (the Temporal Web UI's request shape).
    body = json_format.MessageToJson(Payloads(payloads=[payload]))
    decoded = await api.admin.post(
        "/codec/decode", content=body, headers={"Content-Type": "application/json"}
    )
    assert decoded.status_code == 200, decoded.text
    plain = decoded.json()["payloads"][0]
    assert base64.b64decode(plain["metadata"]["encoding"]) == b"json/plain"
    assert email in base64.b64decode(plain["data"]).decode()


async def test_codec_refuses_strangers_when_loopback_is_not_trusted(
    api: Api, temporal_client: Client
) -> None:
    strict = api.settings.model_copy(update={"codec_allow_loopback": False})
    server, task, strict_api = await start_api(strict, temporal_client)
    try:
        refused = await strict_api.telephony.post("/codec/decode", content=b'{"payloads": []}')
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden"
        allowed = await strict_api.admin.post("/codec/decode", content=b'{"payloads": []}')
        assert allowed.status_code == 200
        assert allowed.json() == {}
    finally:
        await stop_api(server, task, strict_api)
