"""Run the API under uvicorn with Overtime's limits: ``python -m starter.serve``.

uvicorn's command line has a concurrency limit and a keep-alive timeout but no header
timeout: a client that opens a connection and sends its request line and headers a byte
every few seconds keeps the connection, and its file descriptor, for as long as it
likes; thousands of them exhaust the process. This module runs the same app
(``starter.api:app_from_env``) with:

* ``http_limit_concurrency``: more connections or requests than this at once are
  answered ``503 {"error": "overloaded"}`` with ``Retry-After`` (uvicorn answers a plain
  text 503; ours keeps the API's error shape);
* ``http_keep_alive_seconds``: an idle kept-alive connection is closed;
* ``http_header_timeout_seconds``: a connection whose request headers are not complete
  this long after it opened, or after its previous response, is closed (the protocol
  below; nothing is answered, as nothing was asked);
* a request line and headers still incomplete past 16 KiB: 400, closed (h11's limit,
  which uvicorn's httptools protocol, the one run here, does not have);
* the body timeout (``http_body_timeout_seconds``, 408) is the app's own
  (starter/body_limit.py), so it holds under any server;
* no ``Server`` header, no proxy headers (``X-Forwarded-For`` is believed in the app only
  from ``trusted_proxies``), a graceful shutdown of at most 5 s;
* the objects that exist once the app has started (modules, FastAPI's routes and
  models, the Temporal client) frozen out of the garbage collector's reach
  (:class:`OvertimeServer`).

Behind the compose reverse proxy these limits still hold for whatever reaches the API.
Tests start the same server in-process with :func:`build_config` and an app instance.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import socket
from collections.abc import Sequence
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from overtime.settings import Settings, get_settings
from starter.errors import send_error

log = logging.getLogger(__name__)

APP = "starter.api:app_from_env"
GRACEFUL_SHUTDOWN_SECONDS = 5
# What the concurrency 503 tells the client to wait (seconds).
OVERLOADED_RETRY_AFTER = 1
# h11's limit on an incomplete request line and headers (its default, which uvicorn's h11
# protocol, the one this server ran before, kept): the same under httptools.
H11_MAX_HEAD_BYTES = 16 * 1024


class _Guards:
    """The header timeout and the JSON concurrency 503 (a mixin for uvicorn's protocol).

    Subclassed per server by :func:`protocol_for` (the limits are class attributes:
    uvicorn constructs the protocol itself, one per connection). The attributes below
    the limits are uvicorn's protocol's own.
    """

    header_timeout: float = 10.0
    max_concurrency: int | None = None

    app: Any
    connections: set[Any]
    tasks: set[asyncio.Task[None]]
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    limit_concurrency: int | None

    def _install_guards(self) -> None:
        self._header_timer: asyncio.TimerHandle | None = None
        # Our own check replaces uvicorn's (the same test, a different answer).
        self.limit_concurrency = None
        inner = self.app

        async def limited(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and self._over_limit():
                await _overloaded(send)
                return
            await inner(scope, receive, send)

        self.app = limited

    def _over_limit(self) -> bool:
        limit = self.max_concurrency
        # This request's task is already counted, unlike in uvicorn's own check.
        return limit is not None and (len(self.connections) > limit or len(self.tasks) > limit)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        log.debug("request headers incomplete after %.1f s: closed", self.header_timeout)
        # abort(), not close(): nothing of ours is worth flushing to a client that has
        # not sent a request, and close() would wait for a client that does not read.
        self.transport.abort()


class GuardedHttpToolsProtocol(_Guards, HttpToolsProtocol):
    """uvicorn's httptools protocol with the same guards, and h11's limit on an
    incomplete head: when the request line and headers received so far, still not
    complete, pass 16 KiB, the answer is 400 and the connection is closed (httptools
    alone would buffer a head without end for as long as the header timeout lets it).

    httptools parses in C what h11 parses in Python: the server's own CPU per request
    (parse, answer) measured about 230 µs with h11 and 120 µs with this protocol.
    """

    max_head_bytes = H11_MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._install_guards()
        self._in_head = True  # between two requests, or within a request's head
        self._head_bytes = 0  # received while in an incomplete head
        # Messages begun, heads completed and messages completed so far: a read in which
        # any of them happened also held bytes of a body or of a finished head, which are
        # not head bytes (a body ends in such a read; a pipelined head begins in one).
        self._parser_events = 0

    # asyncio.Transport, as uvicorn's own override says (asyncio's base: BaseTransport).
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        events = self._parser_events
        super().data_received(data)
        if self.parser is None or self.transport.is_closing() or not self._in_head:
            return
        # As h11 counts its buffer: a head still incomplete after this data. Only a read
        # that was all head counts: one where a message began, a head completed or a body
        # ended also held other bytes (a head that began there counts from the next read).
        if events == self._parser_events:
            self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            msg = "Invalid HTTP request received."  # h11's answer, through uvicorn
            self.logger.warning(msg)
            self.send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._parser_events += 1
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._parser_events += 1
        self._head_bytes = 0
        super().on_headers_complete()
        # Its headers are complete (its body has its own timeout in the app).
        self._cancel_header_timer()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._parser_events += 1
        self._in_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # Kept alive with no next request parsed yet (a pipelined one already has its
        # headers): the next headers must come in time.
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer()


async def _overloaded(send: Any) -> None:
    await send_error(
        send,
        503,
        "overloaded",
        "the server is at its concurrency limit; retry after Retry-After seconds",
        headers={"Retry-After": str(OVERLOADED_RETRY_AFTER), "Connection": "close"},
    )


def protocol_for(settings: Settings) -> type[GuardedHttpToolsProtocol]:
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout": settings.http_header_timeout_seconds,
            "max_concurrency": settings.http_limit_concurrency,
        },
    )


def build_config(
    settings: Settings,
    app: Any = APP,
    *,
    host: str | None = None,
    port: int | None = None,
    **overrides: Any,
) -> uvicorn.Config:
    """The uvicorn configuration ``python -m starter.serve`` runs.

    ``app`` is the import string of the factory (the default) or an app instance (tests);
    ``overrides`` go to :class:`uvicorn.Config` as they are (``log_level``, ...).
    """
    options: dict[str, Any] = {
        "host": host or settings.http_host,
        "port": settings.http_port if port is None else port,
        "factory": isinstance(app, str),
        # The guarded protocol is an httptools one: forced, whatever else is installed.
        "http": protocol_for(settings),
        "lifespan": "on",
        "limit_concurrency": settings.http_limit_concurrency,
        # uvicorn's annotation says int; the value is only ever a call_later delay.
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "proxy_headers": False,
        "server_header": False,
        "ws": "none",  # the API has no WebSocket routes
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


class OvertimeServer(uvicorn.Server):
    """uvicorn's server, with the startup's objects frozen once the app is up.

    After startup the process holds some 200,000 objects that live as long as it does;
    every full collection walked all of them again, and under telephony load that was
    about a tenth of the API's CPU (measured with ``gc.callbacks``). Frozen
    (``gc.freeze``, after a collection so no garbage is kept), collections only walk
    what requests allocate. A frozen object is still freed by reference counting; only
    a cycle of them that became garbage later would stay (startup objects are the
    process's own: modules, routes, settings, the client).
    """

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        gc.collect()
        gc.freeze()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m starter.serve", description="Run the Overtime HTTP API."
    )
    parser.add_argument("--host", help="address to listen on (OVERTIME_HTTP_HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (OVERTIME_HTTP_PORT)")
    parser.add_argument(
        "--log-level",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's own log level (the app's is OVERTIME_LOG_LEVEL)",
    )
    parser.add_argument(
        "--no-access-log", action="store_true", help="no access log line per request"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    overrides: dict[str, Any] = {}
    if args.log_level:
        overrides["log_level"] = args.log_level
    if args.no_access_log:
        overrides["access_log"] = False
    OvertimeServer(build_config(settings, host=args.host, port=args.port, **overrides)).run()


if __name__ == "__main__":
    main()
