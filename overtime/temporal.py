"""Connecting to Temporal: TLS / mTLS / API keys, and payload encryption.

Workflow inputs carry personal data (the customer's email address), so every payload is
encrypted with AES-256-GCM before it leaves the process: the Temporal server, its
database and its Web UI see ciphertext. The Web UI can show plain values through the
codec server (``/codec/decode`` in the API, see starter/codec_routes.py), which only
answers admins.

Decoding refuses what it cannot trust, without ever raising inside the worker. A
payload that is not encrypted (``temporal workflow update --input '{...}'`` from anyone
who reaches the frontend) or that does not decrypt (tampered, unknown or missing key id)
becomes a payload with a *refused* encoding that no payload converter accepts. The SDK's
argument conversion then fails where that is harmless: an Update is rejected before its
validator runs (never accepted, never in the history), a signal is dropped and logged, a
query fails. Raising from the codec instead would fail the whole workflow task, and a
signal stays in the history, so one bad signal would wedge the account workflow for good.

``OVERTIME_PAYLOAD_ACCEPT_PLAINTEXT`` lets plain payloads through again, only for
migrating a deployment that ran without encryption (its open runs hold plain payloads
that must still replay).
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS
from temporalio.runtime import Runtime

from overtime.payload_converter import OvertimePayloadConverter
from overtime.settings import Settings

ENCODING = b"binary/encrypted"
KEY_ID_HEADER = "encryption-key-id"
NONCE_BYTES = 12
# Encodings no payload converter knows: what a refused payload decodes to (see above).
REFUSED_PLAINTEXT = b"binary/overtime-refused-plaintext"
REFUSED_UNDECRYPTABLE = b"binary/overtime-refused-undecryptable"
REFUSED_ENCODINGS = frozenset({REFUSED_PLAINTEXT, REFUSED_UNDECRYPTABLE})

log = logging.getLogger("overtime.temporal")


class PayloadRefused(ValueError):
    """A payload that does not decrypt (the codec server answers 400 for it)."""


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM per payload; the key id travels in the payload's metadata."""

    def __init__(
        self,
        key_id: str,
        key: bytes,
        old_keys: dict[str, bytes] | None = None,
        *,
        accept_plaintext: bool = False,
    ):
        if len(key) != 32:
            raise ValueError("the payload key must be 32 bytes (base64 of 32 random bytes)")
        self._key_id = key_id
        self._ciphers = {key_id: AESGCM(key)}
        for old_id, old_key in (old_keys or {}).items():
            self._ciphers[old_id] = AESGCM(old_key)
        self._accept_plaintext = accept_plaintext

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = self._ciphers[self._key_id].encrypt(nonce, payload.SerializeToString(), None)
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID_HEADER: self._key_id.encode()},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Never raises for what a payload holds: refused ones come back as sentinels."""
        decoded = []
        for payload in payloads:
            encoding = payload.metadata.get("encoding", b"")
            if encoding != ENCODING:
                if self._accept_plaintext:
                    decoded.append(payload)  # written before encryption was on
                    continue
                # Nothing of the payload itself is logged: it may hold personal data.
                log.warning(
                    "refused a payload that is not encrypted (encoding %r, %d bytes)",
                    encoding[:64],
                    len(payload.data),
                )
                decoded.append(_refused(REFUSED_PLAINTEXT))
                continue
            try:
                decoded.append(self._decrypt(payload))
            except PayloadRefused as err:
                log.error("refused an encrypted payload: %s", err)
                decoded.append(_refused(REFUSED_UNDECRYPTABLE))
        return decoded

    def decode_strict(self, payloads: Sequence[Payload]) -> list[Payload]:
        """For the codec server: plain payloads pass (the Web UI shows patch markers and
        other plain payloads as they are), one that does not decrypt raises."""
        return [p if p.metadata.get("encoding") != ENCODING else self._decrypt(p) for p in payloads]

    def _decrypt(self, payload: Payload) -> Payload:
        raw_key_id = payload.metadata.get(KEY_ID_HEADER)
        if raw_key_id is None:
            raise PayloadRefused("encrypted payload without a key id")
        key_id = raw_key_id.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadRefused(f"payload encrypted with unknown key id {key_id[:64]!r}")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        plain = Payload()
        try:
            plain.ParseFromString(cipher.decrypt(nonce, sealed, None))
        except (InvalidTag, ValueError, DecodeError) as err:
            # InvalidTag: tampered or too short; ValueError: a nonce of the wrong size.
            raise PayloadRefused(f"payload does not decrypt with key id {key_id!r}") from err
        return plain


def _refused(encoding: bytes) -> Payload:
    return Payload(metadata={"encoding": encoding})


def is_refused(payload: Payload) -> bool:
    return payload.metadata.get("encoding") in REFUSED_ENCODINGS


def codec_for(settings: Settings) -> EncryptionCodec:
    old = {kid: base64.b64decode(value) for kid, value in settings.payload_old_keys.items()}
    return EncryptionCodec(
        settings.payload_key_id,
        base64.b64decode(settings.payload_key),
        old,
        accept_plaintext=settings.payload_accept_plaintext,
    )


def data_converter_for(settings: Settings) -> DataConverter:
    return dataclasses.replace(
        DataConverter.default,
        payload_converter_class=OvertimePayloadConverter,
        payload_codec=codec_for(settings),
    )


def client_profile(settings: Settings) -> ClientConfigProfile:
    """Where and how to reach Temporal, in the SDK's own terms (``temporalio.envconfig``).

    ``temporal_profile`` set: that profile of Temporal's client configuration (its TOML file
    and ``TEMPORAL_*`` variables, as the temporal CLI reads them), whole. Otherwise the
    ``temporal_*`` settings; the SDK reads the certificate files and decides TLS the way
    Temporal's clients do (an API key means TLS unless ``temporal_tls`` says false).
    """
    if settings.temporal_profile is not None:
        return ClientConfigProfile.load(profile=settings.temporal_profile)
    tls: ClientConfigTLS | None
    if settings.temporal_tls:
        tls = ClientConfigTLS(
            server_root_ca_cert=_path(settings.temporal_tls_ca),
            client_cert=_path(settings.temporal_tls_cert),
            client_private_key=_path(settings.temporal_tls_key),
        )
    elif settings.temporal_api_key and "temporal_tls" not in settings.model_fields_set:
        tls = None  # the SDK's default for an API key: TLS with the system's roots
    else:
        tls = ClientConfigTLS(disabled=True)
    return ClientConfigProfile(
        address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=settings.temporal_api_key,
        tls=tls,
    )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client for the configured cluster: local dev server, self-hosted or Cloud."""
    return await Client.connect(
        **client_profile(settings).to_client_connect_config(),
        data_converter=data_converter_for(settings),
        runtime=runtime,
    )


def with_codec(client: Client, settings: Settings) -> Client:
    """The same connection, with Overtime's encrypting data converter (tests)."""
    return Client(
        client.service_client,
        namespace=settings.temporal_namespace,
        data_converter=data_converter_for(settings),
    )
