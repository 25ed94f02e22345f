"""Codec server for the Temporal Web UI: ``POST /codec/decode`` and ``/codec/encode``.

Payloads are encrypted (overtime/temporal.py), so the Web UI shows ciphertext unless it
is pointed here (``temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8000/codec``,
which ``make run`` does). Decoding reveals personal data, so it answers an admin bearer
token, or a browser on this machine when ``OVERTIME_CODEC_ALLOW_LOOPBACK`` is on (the dev
default; switch it off in production and let the UI pass its access token).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from overtime.temporal import codec_for
from starter.errors import ApiError

router = APIRouter(prefix="/codec", include_in_schema=False)
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _authorise(request: Request) -> None:
    settings = request.app.state.settings
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        token.encode(), settings.admin_token.encode()
    ):
        return
    client = request.client.host if request.client else ""
    if settings.codec_allow_loopback and client in LOOPBACK:
        return
    raise ApiError(403, "forbidden", "the codec server answers admins only")


async def _payloads(request: Request) -> Payloads:
    try:
        return json_format.Parse(await request.body(), Payloads())
    except json_format.ParseError as err:
        raise ApiError(400, "invalid_payloads", str(err)) from err


@router.post("/decode")
async def decode(request: Request) -> dict:
    _authorise(request)
    payloads = await _payloads(request)
    decoded = await codec_for(request.app.state.settings).decode(payloads.payloads)
    return json_format.MessageToDict(Payloads(payloads=decoded))


@router.post("/encode")
async def encode(request: Request) -> dict:
    _authorise(request)
    payloads = await _payloads(request)
    encoded = await codec_for(request.app.state.settings).encode(payloads.payloads)
    return json_format.MessageToDict(Payloads(payloads=encoded))
