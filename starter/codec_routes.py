"""Codec server for the Temporal Web UI: ``POST /codec/decode`` and ``/codec/encode``.

Payloads are encrypted (overtime/temporal.py), so the Web UI shows ciphertext unless it
is pointed here (``temporal server start-dev --ui-codec-endpoint http://127.0.0.1:8000/codec``,
which ``make run`` does). Decoding reveals personal data, so it answers:

* the admin bearer token (the UI passes its access token; any other token is 403, from
  anywhere, loopback included);
* without a token, only when ``OVERTIME_CODEC_ALLOW_LOOPBACK`` is on (a development
  switch, off by default and refused in production) and the request comes from this
  machine. "From this machine" is ``request.client.host``, which believes
  ``X-Forwarded-For`` only from ``OVERTIME_TRUSTED_PROXIES`` (starter/edge.py), and the
  Host check stops a rebinding page from borrowing a local browser.

A payload that does not decrypt (tampered, unknown or missing key id) or a body that is
not the Payloads JSON is 400 ``invalid_payloads``.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from overtime.settings import Settings
from overtime.temporal import PayloadRefused, codec_for
from starter.errors import ApiError

router = APIRouter(prefix="/codec", include_in_schema=False)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a unix socket or anything not an address: not trusted


def _authorise(request: Request) -> None:
    settings: Settings = request.app.state.settings
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), settings.admin_token.encode()
        ):
            return
        # A wrong token is refused wherever it comes from: it is not the loopback case.
        raise ApiError(403, "forbidden", "the codec server answers the admin token only")
    client = request.client.host if request.client else ""
    if settings.codec_allow_loopback and not settings.is_production and _is_loopback(client):
        return
    raise ApiError(
        401,
        "unauthorized",
        "the codec server needs the admin bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _payloads(request: Request) -> Payloads:
    try:
        return json_format.Parse(await request.body(), Payloads())
    except (json_format.ParseError, UnicodeDecodeError, ValueError) as err:
        # ParseError also covers data that is not base64.
        raise ApiError(400, "invalid_payloads", f"not a Payloads JSON body: {err}") from err


@router.post("/decode")
async def decode(request: Request) -> dict:
    _authorise(request)
    payloads = await _payloads(request)
    try:
        decoded = codec_for(request.app.state.settings).decode_strict(payloads.payloads)
    except PayloadRefused as err:
        raise ApiError(400, "invalid_payloads", str(err)) from err
    return json_format.MessageToDict(Payloads(payloads=decoded))


@router.post("/encode")
async def encode(request: Request) -> dict:
    _authorise(request)
    payloads = await _payloads(request)
    encoded = await codec_for(request.app.state.settings).encode(payloads.payloads)
    return json_format.MessageToDict(Payloads(payloads=encoded))
