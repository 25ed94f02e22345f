"""Refuse oversized request bodies before they are read (413), and bodies that take too
long to arrive (408), in the API's error shape.

A JSON body of this API is a few hundred bytes; buffering and parsing megabytes would let
one client tie up memory and CPU. The limit is checked against ``Content-Length`` before
anything is read, and counted while a chunked body streams in.

A body dribbled a byte at a time would hold its connection, its request task and its
buffer for as long as the client likes (uvicorn has no body timeout; the header timeout
of starter/serve.py ends when the headers are complete). So the whole body must arrive
within ``timeout_seconds`` of the request's headers: past that the request is answered
408 ``request_timeout`` and the connection closed, whatever the app was waiting for.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starter.errors import send_error


class _BodyTimedOut(Exception):
    """Raised into the app from ``receive`` when the body's deadline passed."""


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_seconds: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout_seconds is None else loop.time() + self.timeout_seconds
        seen = 0
        too_large = False
        timed_out = False
        body_complete = False
        refused = False
        started = False  # the app's response began (nothing can replace it then)

        async def limited_receive() -> Message:
            nonlocal seen, too_large, timed_out, body_complete
            if too_large or timed_out:
                return {"type": "http.disconnect"}
            if body_complete or deadline is None:
                # After the body only a disconnect can come: no deadline for that wait.
                message = await receive()
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    timed_out = True
                    # Not a cut-off body handed on as if complete: the app must not act
                    # on part of a request. Whatever it answers is replaced by the 408.
                    raise _BodyTimedOut from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if not message.get("more_body", False):
                    body_complete = True
                if seen > self.max_bytes:
                    # Stop reading: the app sees a cut-off body, and whatever it answers
                    # is replaced by the 413 below.
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal refused, started
            if too_large or (timed_out and not started):
                if not refused:
                    refused = True
                    await (self._refuse(send) if too_large else self._time_out(send))
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTimedOut:
            if started:
                raise  # too late for a 408: the server closes the connection
        if too_large and not refused:
            await self._refuse(send)
        elif timed_out and not refused and not started:
            refused = True
            await self._time_out(send)

    async def _refuse(self, send: Send) -> None:
        await send_error(
            send, 413, "body_too_large", f"request bodies are limited to {self.max_bytes} bytes"
        )

    async def _time_out(self, send: Send) -> None:
        await send_error(
            send,
            408,
            "request_timeout",
            f"the request body did not arrive within {self.timeout_seconds:g} s",
            # The rest of the body may still come: the connection cannot be reused.
            headers={"Connection": "close"},
        )
