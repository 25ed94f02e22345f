"""Personal data never reaches Temporal in the clear; the codec server decodes for admins."""

from __future__ import annotations

import base64

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from overtime.temporal import ENCODING, KEY_ID_HEADER, codec_for
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


async def test_codec_needs_the_admin_token(api: Api, temporal_client: Client) -> None:
    empty = b'{"payloads": []}'
    # The loopback switch is off by default: no token is 401, even from this machine.
    assert api.settings.codec_allow_loopback is False
    missing = await api.anonymous.post("/codec/decode", content=empty)
    assert missing.status_code == 401
    assert missing.json()["error"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer"
    for token in (api.settings.telephony_token, "not-the-admin-token"):
        refused = await api.anonymous.post(
            "/codec/encode", content=empty, headers={"Authorization": f"Bearer {token}"}
        )
        assert refused.status_code == 403
        assert refused.json()["error"] == "forbidden"
    allowed = await api.admin.post("/codec/decode", content=empty)
    assert allowed.status_code == 200
    assert allowed.json() == {}

    # The development switch: no token from loopback passes, a wrong token still does not.
    lenient = api.settings.model_copy(update={"codec_allow_loopback": True})
    server, task, dev_api = await start_api(lenient, temporal_client)
    try:
        assert (await dev_api.anonymous.post("/codec/decode", content=empty)).status_code == 200
        wrong = await dev_api.telephony.post("/codec/decode", content=empty)
        assert wrong.status_code == 403
        basic = await dev_api.anonymous.post(
            "/codec/decode", content=empty, headers={"Authorization": "Basic YWRtaW46YWRtaW4="}
        )
        assert basic.status_code == 403
    finally:
        await stop_api(server, task, dev_api)
    # Never in production, whatever the switch says.
    production = lenient.model_copy(update={"env": "production"})
    server, task, prod_api = await start_api(production, temporal_client)
    try:
        assert (await prod_api.anonymous.post("/codec/decode", content=empty)).status_code == 401
    finally:
        await stop_api(server, task, prod_api)


async def test_bad_payloads_are_400(api: Api) -> None:
    [sealed] = await codec_for(api.settings).encode(
        [Payload(metadata={"encoding": b"json/plain"}, data=b'"secret"')]
    )
    tampered = Payload()
    tampered.CopyFrom(sealed)
    tampered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    unknown_key = Payload()
    unknown_key.CopyFrom(sealed)
    unknown_key.metadata[KEY_ID_HEADER] = b"no-such-key"
    keyless = Payload()
    keyless.CopyFrom(sealed)
    del keyless.metadata[KEY_ID_HEADER]
    short = Payload(metadata={"encoding": ENCODING, KEY_ID_HEADER: sealed.metadata[KEY_ID_HEADER]})
    for bad in (tampered, unknown_key, keyless, short):
        body = json_format.MessageToJson(Payloads(payloads=[sealed, bad]))
        answer = await api.admin.post("/codec/decode", content=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_payloads"
    for body in (
        b'{"payloads": [{"metadata": {"encoding": "!!not base64!!"}, "data": "x"}]}',
        b"not json",
        b'{"payloads": [{"metadata": {"encoding": "YmluYXJ5L2VuY3J5cHRlZA=="}, "data": "%%"}]}',
        b'{"payloads": 3}',
    ):
        answer = await api.admin.post("/codec/decode", content=body)
        assert answer.status_code in (400, 422), (body, answer.text)
        assert answer.json()["error"] in ("invalid_payloads", "invalid_request")
    # The genuine payload beside them still decodes, and plain ones (patch markers in a
    # history) are shown as they are.
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"id":"trust-v3"}')
    body = json_format.MessageToJson(Payloads(payloads=[sealed, plain]))
    answer = await api.admin.post("/codec/decode", content=body)
    assert answer.status_code == 200, answer.text
    values = [base64.b64decode(p["data"]) for p in answer.json()["payloads"]]
    assert values == [b'"secret"', b'{"id":"trust-v3"}']
