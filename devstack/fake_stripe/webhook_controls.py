"""The test-facing knobs of the fake's events and webhooks (a base class of
``FakeStripe``; the bus itself is ``events.EventBus``, on the proxy's loop).

``forward_webhooks(url, secret)`` (or ``--forward-webhooks URL --webhook-secret S``) does
what ``stripe listen --forward-to`` does; the delivery knobs (jitter, duplicates, seed,
retry cap) are kept across ``stop()``/``start()`` and handed to each new bus.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from devstack.fake_stripe.events import WebhookDelivery, WebhookSettings
from devstack.fake_stripe.wire import Json

if TYPE_CHECKING:
    from devstack.fake_stripe.proxy import Emulator


class WebhookControls:
    """Events and webhooks of a ``FakeStripe``; its state is set by ``FakeStripe``."""

    _webhooks: WebhookSettings
    # (url, secret, event types or None for all) while forwarding
    _forward: tuple[str, str, list[str] | None] | None
    _emulator: Emulator | None
    _loop: asyncio.AbstractEventLoop | None

    def _require(self) -> Emulator:
        if self._emulator is None:
            raise RuntimeError("FakeStripe is not running; call start() first")
        return self._emulator

    def _configure_events(self) -> None:
        """Hand the webhook knobs (and a forwarding asked for before start) to the bus."""
        events = self._require().events
        events.settings = self._webhooks
        events.reseed(self._webhooks.seed)
        if self._forward is not None:
            events.forward(*self._forward)

    def _on_loop(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def forward_webhooks(self, url: str, secret: str, events: list[str] | None = None) -> None:
        """Send every event created from now on (of ``events``, names or patterns such as
        ``invoice.*``, if given) to ``url``, signed with ``secret``, the way ``stripe listen
        --forward-to url --events ...`` does; kept across stop()/start()."""
        self._forward = (url, secret, events)
        if self._emulator is not None:
            self._emulator.events.forward(url, secret, events)

    def stop_forwarding(self) -> None:
        """No more deliveries; those still waiting or retrying are dropped."""
        self._forward = None
        if self._emulator is not None:
            self._on_loop(self._emulator.events.stop_forwarding())

    @property
    def forwarding_to(self) -> str | None:
        return self._forward[0] if self._forward is not None else None

    def emit_event(self, type: str, obj: Json, **details: Any) -> Json:
        """Emit an event as the proxy does (tests: events the emulation does not make)."""
        events = self._require().events

        async def emit() -> Json:
            return events.emit(type, obj, **details)

        return dict(self._on_loop(emit()))

    @property
    def events(self) -> list[Json]:
        """Every stored event, oldest first (``GET /v1/events`` serves them newest first)."""
        return self._require().events.events()

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every delivery attempt so far, in the order they ended."""
        return self._require().events.deliveries

    def clear_webhook_deliveries(self) -> None:
        self._require().events.clear_deliveries()

    @property
    def webhook_backlog(self) -> int:
        """Deliveries not finished yet (waiting for their jitter, sending or retrying)."""
        return self._require().events.backlog

    @property
    def webhook_max_jitter_seconds(self) -> float:
        return self._webhooks.max_jitter_seconds

    @webhook_max_jitter_seconds.setter
    def webhook_max_jitter_seconds(self, seconds: float) -> None:
        """0: deliveries one at a time in creation order (no reordering at all)."""
        if seconds < 0:
            raise ValueError("webhook_max_jitter_seconds must not be negative")
        self._webhooks.max_jitter_seconds = seconds

    @property
    def webhook_duplicate_rate(self) -> float:
        return self._webhooks.duplicate_rate

    @webhook_duplicate_rate.setter
    def webhook_duplicate_rate(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("webhook_duplicate_rate must be between 0 and 1")
        self._webhooks.duplicate_rate = rate

    @property
    def webhook_seed(self) -> int | None:
        return self._webhooks.seed

    @webhook_seed.setter
    def webhook_seed(self, seed: int | None) -> None:
        """Restart the delivery choices from ``seed`` (None: unrepeatable)."""
        self._webhooks.seed = seed
        if self._emulator is not None:
            self._emulator.events.reseed(seed)

    @property
    def webhook_retry_max_seconds(self) -> float:
        return self._webhooks.retry_max_seconds

    @webhook_retry_max_seconds.setter
    def webhook_retry_max_seconds(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("webhook_retry_max_seconds must be positive")
        self._webhooks.retry_max_seconds = seconds
