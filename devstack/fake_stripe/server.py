"""``FakeStripe``: localstripe as a child process and the proxy in front of it, on
loopback ports of their own.

``start()`` launches localstripe (``backend.py``) on a free port, then the aiohttp proxy
(``proxy.py``) on its own thread and event loop, on ``port`` (0: a free one), so a test's
event loop never serves it; ``stop()`` ends both. Clients, including
``overtime.stripe_gateway`` and the browser stand-in for Stripe.js, talk only to the proxy
(``api_base``). The test controls (faults, delays, the request log, SEPA and search
timing) are here; the events and webhooks ones in ``webhook_controls.py``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import socket
import threading
from types import TracebackType

import aiohttp
from aiohttp import web

from devstack.fake_stripe.backend import LocalstripeProcess
from devstack.fake_stripe.events import WebhookSettings
from devstack.fake_stripe.faults import Delay, Fault, RequestRecord
from devstack.fake_stripe.proxy import Emulator
from devstack.fake_stripe.webhook_controls import WebhookControls

DEFAULT_PUBLISHABLE_KEY = "pk_test_overtime"

# Stripe's search trails writes ("under normal operating conditions, data is searchable
# in under 1 minute", https://docs.stripe.com/search#data-freshness). Tests get a lag by
# default, short enough to wait out, long enough that read-after-write through search
# fails in the tests as it would against Stripe.
DEFAULT_SEARCH_VISIBILITY_DELAY = 1.0


class FakeStripe(WebhookControls):
    """localstripe plus the gap-filling proxy; ``start()``/``stop()`` are idempotent.

    Usable from synchronous code (``with FakeStripe() as fake: ...``) and from asyncio
    (``async with FakeStripe() as fake: ...`` runs the blocking start/stop in a thread).
    The proxy runs on its own thread and event loop, so a test's loop never serves it.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        publishable_key: str = DEFAULT_PUBLISHABLE_KEY,
        public_host: str | None = None,
        search_visibility_delay: float = DEFAULT_SEARCH_VISIBILITY_DELAY,
        startup_timeout: float = 20.0,
        # Webhook delivery (events.py): out of order by up to this much, a second
        # delivery of this share of events, choices from this seed, retries backing off
        # to at most this many seconds (Stripe: hours; a test waits seconds).
        webhook_max_jitter_seconds: float = 0.3,
        webhook_duplicate_rate: float = 0.2,
        webhook_seed: int | None = 0,
        webhook_retry_max_seconds: float = 2.0,
        # SEPA debits stay "processing" this long before they settle (Stripe: days; its
        # test IBANs a few seconds, the "Delayed" ones about three minutes).
        sepa_processing_seconds: float = 1.0,
        sepa_delayed_processing_seconds: float = 6.0,
    ) -> None:
        self._sepa_processing_seconds = sepa_processing_seconds
        self._sepa_delayed_processing_seconds = sepa_delayed_processing_seconds
        self._webhooks = WebhookSettings(
            max_jitter_seconds=webhook_max_jitter_seconds,
            duplicate_rate=webhook_duplicate_rate,
            seed=webhook_seed,
            retry_max_seconds=webhook_retry_max_seconds,
        )
        # (url, secret, event types or None for all) while forwarding
        self._forward: tuple[str, str, list[str] | None] | None = None
        self._host = host
        self._requested_port = port
        self._public_host = public_host
        self._publishable_key = publishable_key
        self._search_visibility_delay = search_visibility_delay
        self._startup_timeout = startup_timeout
        self._state_lock = threading.Lock()
        self._backend: LocalstripeProcess | None = None
        self._backend_url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._emulator: Emulator | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeStripe:
        with self._state_lock:
            if self._emulator is not None:
                return self
            try:
                self._start_backend()
                self._start_proxy()
                self._configure_events()
            except BaseException:
                self._stop_locked()
                raise
            atexit.register(self.stop)
            return self

    def stop(self) -> None:
        with self._state_lock:
            self._stop_locked()
        atexit.unregister(self.stop)

    def _start_backend(self) -> None:
        self._backend = LocalstripeProcess(self._startup_timeout)
        self._backend_url = self._backend.start()

    def _start_proxy(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=self._run_loop, args=(loop,), name="fake-stripe-proxy", daemon=True
        )
        self._thread.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._requested_port))
        self._port = int(sock.getsockname()[1])
        public_base = f"http://{self._public_host or self._host}:{self._port}"
        assert self._backend_url is not None
        emulator = Emulator(self._backend_url, public_base, self._search_visibility_delay)
        emulator.payments.sepa_processing_seconds = self._sepa_processing_seconds
        emulator.payments.sepa_delayed_processing_seconds = self._sepa_delayed_processing_seconds
        future = asyncio.run_coroutine_threadsafe(self._serve(emulator, sock), loop)
        future.result(self._startup_timeout)
        self._emulator = emulator

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    async def _serve(self, emulator: Emulator, sock: socket.socket) -> None:
        emulator.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", emulator.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner

    async def _shutdown(self) -> None:
        if self._emulator is not None:  # webhooks under way end with the server
            await self._emulator.events.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._emulator is not None and self._emulator.session is not None:
            await self._emulator.session.close()

    def _stop_locked(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
        if loop is not None and not loop.is_running():
            loop.close()
        self._loop = self._thread = self._runner = None
        self._emulator = None
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.stop()

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeStripe:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- what clients need ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._emulator is not None

    @property
    def api_base(self) -> str:
        if self._port is None or self._emulator is None:
            raise RuntimeError("FakeStripe is not running; call start() first")
        return self._emulator.public_base

    @property
    def publishable_key(self) -> str:
        return self._publishable_key

    @property
    def backend_pid(self) -> int | None:
        """The localstripe child's pid while running (tests assert it is gone after stop)."""
        return self._backend.pid if self._backend is not None else None

    @property
    def secret_key(self) -> str:
        """Any ``sk_`` key is accepted; this one is as good as another."""
        return "sk_test_overtime"

    @property
    def stripe_js_url(self) -> str:
        return f"{self.api_base}/js.stripe.com/v3/"

    # -- test controls -------------------------------------------------------------------

    def inject_faults(
        self,
        status: int = 500,
        count: int = 1,
        path_prefix: str = "/v1/",
        *,
        method: str | None = None,
        after_forward: bool = False,
    ) -> None:
        """Fail the next ``count`` matching requests with ``status`` (0: drop the connection).

        ``after_forward=False`` (default): the request never reaches localstripe.
        ``after_forward=True``: it is executed (and its idempotent result stored), then the
        answer is replaced by the error, the case idempotency keys exist for.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        emulator = self._require()
        with emulator.journal.lock:
            emulator.journal.faults.append(
                Fault(status, count, path_prefix, method.upper() if method else None, after_forward)
            )

    def inject_delay(
        self,
        seconds: float,
        count: int = 1,
        path_prefix: str = "/v1/",
        *,
        method: str | None = None,
    ) -> None:
        """Hold the next ``count`` matching requests for ``seconds`` before handling them."""
        if count < 1:
            raise ValueError("count must be at least 1")
        emulator = self._require()
        with emulator.journal.lock:
            emulator.journal.delays.append(
                Delay(seconds, count, path_prefix, method.upper() if method else None)
            )

    def clear_faults(self) -> None:
        emulator = self._require()
        with emulator.journal.lock:
            emulator.journal.faults.clear()
            emulator.journal.delays.clear()

    @property
    def sepa_processing_seconds(self) -> float:
        return self._sepa_processing_seconds

    @sepa_processing_seconds.setter
    def sepa_processing_seconds(self, seconds: float) -> None:
        """How long a SEPA debit stays processing (debits started from now on)."""
        if seconds < 0:
            raise ValueError("sepa_processing_seconds must not be negative")
        self._sepa_processing_seconds = seconds
        if self._emulator is not None:
            self._emulator.payments.sepa_processing_seconds = seconds

    @property
    def sepa_delayed_processing_seconds(self) -> float:
        return self._sepa_delayed_processing_seconds

    @sepa_delayed_processing_seconds.setter
    def sepa_delayed_processing_seconds(self, seconds: float) -> None:
        """The same for the "Delayed" test IBANs (pm_successDelayed_de, pm_failedDelayed_de)."""
        if seconds < 0:
            raise ValueError("sepa_delayed_processing_seconds must not be negative")
        self._sepa_delayed_processing_seconds = seconds
        if self._emulator is not None:
            self._emulator.payments.sepa_delayed_processing_seconds = seconds

    @property
    def search_visibility_delay(self) -> float:
        return self._search_visibility_delay

    @search_visibility_delay.setter
    def search_visibility_delay(self, seconds: float) -> None:
        """Objects younger than this are invisible to search, like Stripe's lagging index."""
        self._search_visibility_delay = seconds
        if self._emulator is not None:
            self._emulator.search_visibility_delay = seconds

    @property
    def request_log(self) -> list[RequestRecord]:
        emulator = self._require()
        with emulator.journal.lock:
            return list(emulator.journal.log)

    def requests(
        self, method: str | None = None, path: str | None = None, *, prefix: str | None = None
    ) -> list[RequestRecord]:
        """The log filtered by method and exact path (or path prefix)."""
        return [
            r
            for r in self.request_log
            if (method is None or r.method == method.upper())
            and (path is None or r.path == path)
            and (prefix is None or r.path.startswith(prefix))
        ]

    def clear_request_log(self) -> None:
        emulator = self._require()
        with emulator.journal.lock:
            emulator.journal.log.clear()
