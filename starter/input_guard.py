"""Refuse malformed input once, for every route, before any handler sees it (422).

What gets through here reaches the database and the logs, so it must never make them
fail: PostgreSQL refuses a NUL byte in a text value (a 500 deep in a query), a body
that is not UTF-8 made FastAPI answer 400 ``http_error``, and a JSON object with one key
twice was read last-value-wins, while a proxy or a WAF in front of us may read the first.

Checked, answered ``422 {"error": "invalid_request", "detail": ...}`` on every route,
API and web pages alike (only a hand-made request can trip these; a browser never sends
them):

* the path and the query string: no NUL byte, valid UTF-8 once percent-decoded; the path
  also no other control character (ids never contain one);
* JSON bodies (``application/json``, ``*+json``, or no content type, which a route
  reading ``request.json()`` parses as JSON all the same): valid UTF-8, no key twice in
  any object, no NUL or lone surrogate escape in any key or string, no
  ``NaN``/``Infinity`` (not JSON), at most
  64 levels deep; a body that is not JSON at all is left to the route's own 422;
* form bodies: urlencoded ones valid UTF-8 without NUL once decoded, multipart ones
  without a NUL byte (the app takes no file uploads).

Stripe's webhook body is exempt from the body checks: it is authenticated by its
signature and parsed by Stripe's library, and refusing a genuinely signed event would
only make Stripe retry it for days. The middleware sits inside ``BodySizeLimit``, so a
body is buffered only up to that limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starter.errors import send_error

# Signed bodies parsed by their own verifier (see the module docstring).
BODY_CHECK_EXEMPT = frozenset({"/v1/stripe/webhook"})
CONTROL_CHARACTERS = frozenset(chr(c) for c in (*range(0x20), 0x7F))
# No body of this API nests more than a few levels; a deeper one is refused (422) before
# anything recurses through it.
MAX_DEPTH = 64


class InvalidInput(ValueError):
    """What is wrong with the request, in words for the ``detail``."""


class InputGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            check_path(scope)
            check_query(scope.get("query_string", b""))
        except InvalidInput as err:
            await refuse(scope, send, str(err))
            return
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        kind = _body_kind(scope)
        if kind is None or scope.get("path") in BODY_CHECK_EXEMPT:
            await self.app(scope, receive, send)
            return
        body, disconnected = await _read_body(receive)
        if disconnected:
            return  # the client went away; nobody is waiting for an answer
        try:
            if kind == "json":
                check_json(body)
            elif kind == "urlencoded":
                check_urlencoded(body)
            else:
                check_multipart(body)
        except InvalidInput as err:
            await refuse(scope, send, str(err))
            return
        await self.app(scope, _replay(body, receive), send)


# --- the checks (pure functions, tested directly too) ------------------------------------


def check_path(scope: Scope) -> None:
    raw = scope.get("raw_path")
    decoded = unquote_to_bytes(raw) if raw else str(scope.get("path", "")).encode()
    text = _utf8(decoded, "the path")
    if any(char in CONTROL_CHARACTERS for char in text):
        raise InvalidInput("the path contains a control character (NUL, newline, ...)")


def check_query(query_string: bytes) -> None:
    decoded = unquote_to_bytes(query_string.replace(b"+", b" "))
    if b"\x00" in decoded:
        raise InvalidInput("the query string contains a NUL byte")
    _utf8(decoded, "the query string")


def check_urlencoded(body: bytes) -> None:
    # Decoding the whole body is the same as decoding each field: neither "&" nor "="
    # can complete a UTF-8 sequence or a percent escape.
    decoded = unquote_to_bytes(body.replace(b"+", b" "))
    if b"\x00" in decoded:
        raise InvalidInput("the form contains a NUL byte")
    _utf8(decoded, "the form")


def check_multipart(body: bytes) -> None:
    if b"\x00" in body:
        raise InvalidInput("the form contains a NUL byte")


def check_json(body: bytes) -> None:
    if not body.strip():
        return  # an empty body: the route says what it is missing
    # The routes parse the bytes, and json.loads(bytes) skips a UTF-8 byte-order mark:
    # checked here as they will read it (with the mark, every check would be skipped as
    # "not JSON" while the route still accepted the body).
    text = _utf8(body, "the JSON body").removeprefix("\ufeff")
    try:
        parsed = json.loads(
            text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
        )
    except json.JSONDecodeError:
        return  # not JSON at all: the route's validation answers 422 json_invalid
    except InvalidInput:
        raise
    except ValueError as err:  # an integer beyond Python's 4,300-digit conversion limit
        raise InvalidInput(f"the JSON body has a number that is too long ({err})") from err
    except RecursionError as err:  # the C parser gives up near the interpreter's limit
        raise InvalidInput(f"the JSON body is nested more than {MAX_DEPTH} levels deep") from err
    _walk(parsed)


def _utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(f"{where} is not valid UTF-8 (byte {err.start})") from err


def _check_text(value: str, where: str) -> None:
    """No NUL, and no lone surrogate (``"\\ud800"`` is valid JSON but no UTF-8 text can
    hold it: PostgreSQL, the logs and every encoder would fail on it later)."""
    if "\x00" in value:
        raise InvalidInput(f"the JSON body has a NUL character in {where}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidInput(f"the JSON body has a lone surrogate escape in {where}") from err


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput(f"the JSON body has the key {key!r} twice in one object")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise InvalidInput(f"the JSON body contains {name}, which is not JSON")


def _walk(parsed: Any) -> None:
    """Refuse NUL in any key or string, and nesting deeper than MAX_DEPTH.

    Iterative, so that depth alone can never raise RecursionError here.
    """
    stack: list[tuple[Any, str, int]] = [(parsed, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth >= MAX_DEPTH:
            raise InvalidInput(f"the JSON body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, str):
            _check_text(value, where or "a string")
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, "a key")
                stack.append((item, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))


# --- ASGI plumbing --------------------------------------------------------------------------


def _headers(scope: Scope) -> Iterable[tuple[bytes, bytes]]:
    return scope.get("headers") or []


def _has_body(scope: Scope) -> bool:
    for name, value in _headers(scope):
        if name == b"content-length" and value.strip() not in (b"", b"0"):
            return True
        if name == b"transfer-encoding":
            return True
    return False


def _body_kind(scope: Scope) -> str | None:
    content_type = next((v for n, v in _headers(scope) if n == b"content-type"), None)
    if not content_type or not content_type.strip():
        # Some routes read such a body as JSON all the same (request.json() does not ask).
        return "json"
    media = content_type.split(b";", 1)[0].strip().lower()
    if media == b"application/json" or media.endswith(b"+json"):
        return "json"
    if media == b"application/x-www-form-urlencoded":
        return "urlencoded"
    if media == b"multipart/form-data":
        return "multipart"
    return None


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the client's disconnect, when it comes

    return replay


async def refuse(scope: Scope, send: Send, detail: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1007})
        return
    await send_error(send, 422, "invalid_request", detail)
