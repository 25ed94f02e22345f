"""Connecting to Temporal: TLS / mTLS / API keys, and payload encryption.

Workflow inputs carry personal data (the customer's email address), so every payload is
encrypted with AES-256-GCM before it leaves the process: the Temporal server, its
database and its Web UI see ciphertext. The Web UI can show plain values through the
codec server (``/codec/decode`` in the API, see starter/codec_routes.py), which only
answers admins.

Payloads written before encryption was switched on stay readable: decoding passes
through any payload that is not marked ``binary/encrypted``.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from overtime.settings import Settings

ENCODING = b"binary/encrypted"
KEY_ID_HEADER = "encryption-key-id"
NONCE_BYTES = 12


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM per payload; the key id travels in the payload's metadata."""

    def __init__(self, key_id: str, key: bytes, old_keys: dict[str, bytes] | None = None):
        if len(key) != 32:
            raise ValueError("the payload key must be 32 bytes (base64 of 32 random bytes)")
        self._key_id = key_id
        self._ciphers = {key_id: AESGCM(key)}
        for old_id, old_key in (old_keys or {}).items():
            self._ciphers[old_id] = AESGCM(old_key)

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
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)  # written before encryption was on
                continue
            key_id = payload.metadata[KEY_ID_HEADER].decode()
            cipher = self._ciphers.get(key_id)
            if cipher is None:
                raise ValueError(f"payload encrypted with unknown key id {key_id!r}")
            nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
            plain = Payload()
            plain.ParseFromString(cipher.decrypt(nonce, sealed, None))
            decoded.append(plain)
        return decoded


def codec_for(settings: Settings) -> EncryptionCodec:
    old = {kid: base64.b64decode(value) for kid, value in settings.payload_old_keys.items()}
    return EncryptionCodec(settings.payload_key_id, base64.b64decode(settings.payload_key), old)


def data_converter_for(settings: Settings) -> DataConverter:
    return dataclasses.replace(DataConverter.default, payload_codec=codec_for(settings))


def _tls(settings: Settings) -> TLSConfig | bool:
    if not settings.temporal_tls:
        return False

    def read(path: str | None) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as handle:
            return handle.read()

    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_ca),
        client_cert=read(settings.temporal_tls_cert),
        client_private_key=read(settings.temporal_tls_key),
    )


async def connect(settings: Settings, runtime: Runtime | None = None) -> Client:
    """A client for the configured cluster: local dev server, self-hosted or Cloud."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter_for(settings),
        tls=_tls(settings),
        api_key=settings.temporal_api_key,
        runtime=runtime,
    )


def with_codec(client: Client, settings: Settings) -> Client:
    """The same connection, with Overtime's encrypting data converter (tests)."""
    return Client(
        client.service_client,
        namespace=settings.temporal_namespace,
        data_converter=data_converter_for(settings),
    )
