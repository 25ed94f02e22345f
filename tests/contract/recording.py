"""Every request the stripe SDK makes, with the answer it got, for the contract test.

``Recorder.http_client()`` is a ``stripe.RequestsClient`` that keeps each exchange; a
gateway built inside ``Recorder.patched()`` uses it, so the contract test drives the real
``StripeGateway`` methods and sees exactly the bodies they read.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import stripe

# Stripe ids in paths (and test ids such as pm_card_visa), so that one problem seen on
# many invoices is reported once.
_ID_IN_PATH = re.compile(
    r"/(?:cus|in|ii|il|pm|seti|pi|ch|txr|txi|evt|inpay|re|src|card|ba)_[A-Za-z0-9_]+"
)


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str  # without the query
    query: str
    request_body: str
    status: int
    body: Any  # parsed JSON, or None when the answer was not JSON
    source: str = ""  # who made the request ("gateway" for StripeGateway's client)

    @property
    def route(self) -> str:
        """``POST /v1/invoices/{id}/pay``: the path with ids replaced."""
        return f"{self.method} {_ID_IN_PATH.sub('/{id}', self.path)}"


class _RecordingClient(stripe.RequestsClient):
    """The SDK's own requests transport, keeping a copy of each exchange."""

    def __init__(self, recorder: Recorder, timeout: float, source: str) -> None:
        super().__init__(timeout=timeout)
        self._recorder, self._source = recorder, source

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        content, status, response_headers = super().request(method, url, headers, post_data)
        self._recorder.add(method, url, post_data, status, content, self._source)
        return content, status, response_headers


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []

    def http_client(self, timeout: float = 30.0, source: str = "") -> stripe.RequestsClient:
        return _RecordingClient(self, timeout=timeout, source=source)

    @contextlib.contextmanager
    def patched(self) -> Iterator[None]:
        """While inside, ``stripe.RequestsClient(...)`` (what ``StripeGateway`` builds its
        client with) is the recording client, its exchanges marked ``gateway``."""
        original = stripe.RequestsClient
        stripe.RequestsClient = lambda timeout=30.0, **_: self.http_client(timeout, "gateway")  # type: ignore[assignment,misc]
        try:
            yield
        finally:
            stripe.RequestsClient = original  # type: ignore[misc]

    def add(
        self, method: str, url: str, post_data: Any, status: int, content: bytes, source: str
    ) -> None:
        parts = urlsplit(url)
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        request_body = post_data.decode() if isinstance(post_data, bytes) else str(post_data or "")
        exchange = Exchange(
            method.upper(), parts.path, parts.query, request_body, status, body, source
        )
        with self._lock:
            self._exchanges.append(exchange)

    def take(self) -> list[Exchange]:
        """The exchanges since the last ``take``."""
        with self._lock:
            taken, self._exchanges = self._exchanges, []
        return taken
