"""The input guard against a reference model, on generated JSON bodies.

Hypothesis builds JSON documents as trees whose objects are lists of (key, value) pairs,
so a key may appear twice, and whose strings may hold NUL characters or lone surrogates.
The reference says, from the tree alone, whether the body must be refused; the guard
(`starter.input_guard.InputGuard`, the ASGI middleware every route sits behind) must
refuse exactly those with 422 `invalid_request`, and hand every other body to the app
byte for byte.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starter.input_guard import MAX_DEPTH, InputGuard

# The input guard alone: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only

# A tree: ("obj", [(key, tree)]), ("arr", [tree]), ("str", text), ("num", int), ("lit", ...)
text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", "\ud800", "\udfff", '"', "\\", "é"]),
    ),
    max_size=6,
)
keys = st.sampled_from(["a", "b", "account_id", "é", "a\x00", "\ud83d"]) | text
leaves = st.one_of(
    text.map(lambda t: ("str", t)),
    st.integers(-(2**63), 2**63).map(lambda n: ("num", n)),
    st.sampled_from([True, False, None]).map(lambda v: ("lit", v)),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(st.tuples(keys, inner), max_size=4).map(lambda pairs: ("obj", pairs)),
        st.lists(inner, max_size=4).map(lambda items: ("arr", items)),
    ),
    max_leaves=12,
)


def encode(tree: Any) -> str:
    """JSON text for a tree, with lone surrogates written as \\u escapes (as a client
    could) and keys repeated exactly as the tree has them."""
    kind, value = tree
    if kind == "obj":
        return "{" + ",".join(f"{_string(k)}:{encode(v)}" for k, v in value) + "}"
    if kind == "arr":
        return "[" + ",".join(encode(v) for v in value) + "]"
    if kind == "str":
        return _string(value)
    return json.dumps(value)


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)  # surrogates and NUL become \\u escapes


def nested(tree: Any, depth: int) -> Any:
    for _ in range(depth):
        tree = ("arr", [tree])
    return tree


def refused_by_model(tree: Any, depth: int = 0) -> bool:
    """The rules, stated once and plainly: any key twice in one object; a NUL or a lone
    surrogate in any key or string; more than MAX_DEPTH levels."""
    if depth >= MAX_DEPTH:
        return True
    kind, value = tree
    if kind == "obj":
        names = [k for k, _ in value]
        if len(set(names)) != len(names) or any(_bad(k) for k in names):
            return True
        return any(refused_by_model(v, depth + 1) for _, v in value)
    if kind == "arr":
        return any(refused_by_model(v, depth + 1) for v in value)
    return kind == "str" and _bad(value)


def _bad(value: str) -> bool:
    return "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value)


async def through_guard(body: bytes) -> tuple[int, bytes | None, bytes]:
    """(status, what the app received or None, response body) for one JSON POST."""
    received: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        received.append(b"".join(chunks))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    # The body arrives in two chunks, as a slow client's would.
    parts = [body[: len(body) // 2], body[len(body) // 2 :]]

    async def receive() -> dict[str, Any]:
        chunk = parts.pop(0) if parts else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/calls/usage",
        "raw_path": b"/v1/calls/usage",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await InputGuard(app)(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, (received[0] if received else None), answer


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, depth=st.sampled_from([0, 0, 0, MAX_DEPTH - 2, MAX_DEPTH + 1]))
def test_the_guard_refuses_exactly_what_the_model_refuses(tree: Any, depth: int) -> None:
    tree = nested(tree, depth)
    body = encode(tree).encode()
    status, received, answer = asyncio.run(through_guard(body))
    if refused_by_model(tree):
        assert status == 422, body
        assert json.loads(answer)["error"] == "invalid_request"
        assert received is None  # the app never saw it
    else:
        assert status == 200, (body, answer)
        assert received == body  # handed on byte for byte


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=40))
def test_arbitrary_bytes_never_reach_the_app_unless_they_are_valid_utf8(raw: bytes) -> None:
    status, received, answer = asyncio.run(through_guard(b'{"a":"' + raw + b'"}'))
    try:
        (b'{"a":"' + raw + b'"}').decode("utf-8")
    except UnicodeDecodeError:
        assert status == 422 and received is None
        assert json.loads(answer)["error"] == "invalid_request"
        return
    # Valid UTF-8: refused only for what the rules name; otherwise handed on unchanged
    # (a raw control character makes it invalid JSON, which the route itself answers 422).
    assert status in (200, 422)
    if status == 200:
        assert received == b'{"a":"' + raw + b'"}'
