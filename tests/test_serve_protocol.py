"""The server's HTTP protocol (starter/serve.py): httptools, with h11's limit on a head.

httptools has no limit of its own on a request's line and headers; h11, which the API ran
before, answered 400 and closed once a head still incomplete passed 16 KiB. The guarded
httptools protocol keeps that limit, and counts only the head: a body in the same packets
is the body limit's business (starter/body_limit.py). A client that keeps sending after
the 400 may not read it (the close resets the connection): never answered 200, closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from overtime.observability import free_port
from overtime.settings import Settings
from starter.serve import H11_MAX_HEAD_BYTES, GuardedHttpToolsProtocol, build_config, protocol_for

# The HTTP protocol alone (its own throwaway SQLite file); the PostgreSQL pass would
# repeat it unchanged.
pytestmark = pytest.mark.sqlite_only


async def echo_size(scope: Any, receive: Any, send: Any) -> None:
    """Answers 200 with the size of the body it read."""
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = str(size).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        # Longer than any wait here: what closes a connection is the head limit.
        http_header_timeout_seconds=60.0,
    )
    config = build_config(
        settings, echo_size, host="127.0.0.1", port=free_port(), log_level="error", lifespan="off"
    )
    served = uvicorn.Server(config)
    task = asyncio.create_task(served.serve())
    while not served.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield config.host, config.port
    finally:
        served.should_exit = True
        await task


async def exchange(address: tuple[str, int], *parts: bytes) -> bytes:
    """Send ``parts`` one after the other (until the server closes); everything the
    server sends until it closes."""
    reader, writer = await asyncio.open_connection(*address)
    data = b""
    try:
        try:
            for part in parts:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.005)
        except ConnectionError:
            pass  # refused before it was all sent: its answer may be there to read
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), 10):
                data += chunk
        except ConnectionError:
            pass
        return data
    finally:
        writer.close()


def request(headers: list[str], body: bytes = b"") -> bytes:
    head = ["POST /x HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def refused(answer: bytes) -> bool:
    """Closed without an answer, or answered h11's 400."""
    return answer == b"" or (
        answer.startswith(b"HTTP/1.1 400") and answer.endswith(b"Invalid HTTP request received.")
    )


def test_the_server_runs_httptools() -> None:
    settings = Settings()
    assert issubclass(protocol_for(settings), GuardedHttpToolsProtocol)


async def test_a_head_within_the_limit_is_answered(server: tuple[str, int]) -> None:
    answer = await exchange(server, request(["X-Padding: " + "a" * (H11_MAX_HEAD_BYTES - 2000)]))
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


async def test_a_head_over_the_limit_in_pieces_is_refused(server: tuple[str, int]) -> None:
    # Many small headers, a few per packet: no single header is large.
    lines = [f"X-H{i}: {'b' * 90}" for i in range(H11_MAX_HEAD_BYTES // 90 + 10)]
    whole = request(lines)
    pieces = [whole[i : i + 1000] for i in range(0, len(whole), 1000)]
    answer = await exchange(server, *pieces)
    assert refused(answer), answer[:200]


async def test_one_huge_header_value_in_pieces_is_refused(server: tuple[str, int]) -> None:
    start = b"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: "
    pieces = [start, *[b"c" * 4096 for _ in range(8)]]  # never completes
    answer = await exchange(server, *pieces)
    assert refused(answer), answer[:200]


async def test_a_body_is_not_counted_as_head(server: tuple[str, int]) -> None:
    body = b"d" * (4 * H11_MAX_HEAD_BYTES)
    answer = await exchange(server, request([], body))  # head and body in one write
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer.endswith(str(len(body)).encode())


async def test_a_body_sent_after_its_head_is_not_counted_as_head(
    server: tuple[str, int],
) -> None:
    """A body larger than the head limit that arrives in reads of its own (a proxy, a
    Stripe webhook of 20 KiB, ``Expect: 100-continue``): its last read ends the message,
    and none of it is head."""
    for size in (H11_MAX_HEAD_BYTES + 4000, 600_000):
        head, _, body = request([], b"d" * size).partition(b"\r\n\r\n")
        answer = await exchange(server, head + b"\r\n\r\n", body)
        assert answer.startswith(b"HTTP/1.1 200"), (size, answer[:200])
        assert answer.endswith(str(size).encode())
    # Expect: 100-continue: the head, the server's 100, then the body.
    head, _, body = request(["Expect: 100-continue"], b"d" * 20_000).partition(b"\r\n\r\n")
    reader, writer = await asyncio.open_connection(*server)
    try:
        writer.write(head + b"\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(100), 10)).startswith(b"HTTP/1.1 100")
        writer.write(body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 10)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    finally:
        writer.close()


async def test_kept_alive_requests_each_get_their_own_head_limit(server: tuple[str, int]) -> None:
    padding = "X-Padding: " + "e" * (H11_MAX_HEAD_BYTES // 2)
    first = request([padding]).replace(b"Connection: close\r\n", b"")
    answer = await exchange(server, first, first, first, request([padding]))
    assert answer.count(b"HTTP/1.1 200") == 4, answer[:300]
