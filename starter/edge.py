"""What the API believes about a request before any route sees it.

* The client address: ``X-Forwarded-For`` is believed only from
  ``OVERTIME_TRUSTED_PROXIES`` (addresses or CIDR networks), through uvicorn's
  ProxyHeadersMiddleware; every server we start runs uvicorn with its own
  ``proxy_headers`` off (uvicorn would otherwise trust 127.0.0.1, and anything that
  reaches the API through a local proxy could claim to be loopback). So
  ``request.client.host`` is the truthful address everywhere: the login throttle and
  the codec server's loopback switch rely on it.
* The ``Host`` header: only ``Settings.effective_allowed_hosts()`` (DNS rebinding: a
  page on evil.example resolving to 127.0.0.1 would otherwise reach the loopback-trusting
  codec server with the browser's help). 400 ``invalid_host`` otherwise.
* CORS: the Temporal Web UI's origin may call ``/codec`` only; no other route answers
  another origin. The origin follows ``OVERTIME_TEMPORAL_UI_PORT`` unless
  ``OVERTIME_CODEC_CORS_ORIGINS`` names it (``Settings.effective_codec_cors_origins``).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from overtime.settings import Settings, check_trusted_proxies
from starter.errors import send_error

CODEC_PREFIX = "/codec"


def host_of(header: str) -> str | None:
    """The host of a ``Host`` header, lower-cased, without port or IPv6 brackets
    (``[::1]:8000`` → ``::1``); None when it is not a well-formed host."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not value[end + 1 :].startswith(":")):
            return None
        host = value[1:end]
    else:
        host = value.rsplit(":", 1)[0] if value.count(":") == 1 else value
        if ":" in host:
            return None  # an IPv6 address must be bracketed in a Host header
    return host or None


class TrustedHosts:
    """Starlette's TrustedHostMiddleware rules, answered in the API's error shape."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed = [h.lower() for h in allowed_hosts]
        self.allow_any = "*" in self.allowed

    def _allowed(self, host: str) -> bool:
        for pattern in self.allowed:
            if host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:])):
                return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = dict(scope.get("headers") or []).get(b"host")
        host = host_of(raw.decode("latin-1")) if raw is not None else None
        if host is not None and self._allowed(host):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_error(send, 400, "invalid_host", "this server does not answer for that host")


class CodecOnlyCORS:
    """CORS for the codec server's paths; every other path passes by untouched (no
    Access-Control-Allow-Origin, so the UI's origin cannot read the rest of the API)."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["content-type", "x-namespace", "authorization"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path == CODEC_PREFIX or path.startswith(CODEC_PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install_edge(app: FastAPI, settings: Settings) -> None:
    """Add the three, outermost last: the proxy headers are resolved before anything else."""
    app.add_middleware(CodecOnlyCORS, origins=settings.effective_codec_cors_origins())
    app.add_middleware(TrustedHosts, allowed_hosts=settings.effective_allowed_hosts())
    # The Settings validator's rule again: settings built with model_copy skip validators.
    check_trusted_proxies(settings.trusted_proxies)
    if settings.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
