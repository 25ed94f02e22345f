"""Slow clients are cut off: real sockets against ``python -m starter.serve``.

Headers or a body dribbled a byte at a time, and hundreds of half-sent requests, are
closed after the configured timeouts (1 s here), the server's file descriptors come back,
and a normal request is answered meanwhile. The concurrency limit answers in the API's
error shape.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from temporalio.client import Client

from overtime.observability import free_port
from overtime.settings import Settings
from starter.api import create_app
from starter.serve import build_config
from tests.conftest import ADMIN_TOKEN, TELEPHONY_TOKEN, eventually, worker_env

ROOT = Path(__file__).resolve().parent.parent
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
KEEP_ALIVE = 3.0
# How late a cut-off may come on a loaded CI machine (the timers are exact; the event
# loop and the client's reads are not).
SLACK = 1.5
HALF_SENT = 300


# --- a server process: python -m starter.serve ------------------------------------------


def serve_env(settings: Settings, **overrides: object) -> dict[str, str]:
    """The environment for ``python -m starter.serve`` against the test stack."""
    env = worker_env(settings)
    env["OVERTIME_ADMIN_TOKEN"] = ADMIN_TOKEN
    env["OVERTIME_TELEPHONY_TOKEN"] = TELEPHONY_TOKEN
    env["OVERTIME_TELEPHONY_TIMEOUT_SECONDS"] = str(settings.telephony_timeout_seconds)
    env["OVERTIME_STRIPE_API_KEY"] = settings.stripe_api_key
    for name, value in overrides.items():
        env[f"OVERTIME_{name.upper()}"] = str(value)
    return env


@dataclass
class ServedApi:
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))


def start_served(settings: Settings, log: Path, **overrides: object) -> ServedApi:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "starter.serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=serve_env(settings, **overrides),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    served = ServedApi(process, "127.0.0.1", port, log)
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the API exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{served.base_url}/livez", timeout=1).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the API did not start: {log.read_text()[-3000:]}")
        time.sleep(0.1)


def stop_served(served: ServedApi) -> None:
    served.process.send_signal(signal.SIGTERM)
    try:
        served.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.wait()


@pytest.fixture(scope="module")
def served(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApi]:
    log = tmp_path_factory.mktemp("serve") / "api.log"
    served = start_served(
        settings,
        log,
        http_header_timeout_seconds=HEADER_TIMEOUT,
        http_body_timeout_seconds=BODY_TIMEOUT,
        http_keep_alive_seconds=KEEP_ALIVE,
        http_limit_concurrency=1000,
    )
    try:
        yield served
    finally:
        stop_served(served)


# --- raw HTTP/1.1 -------------------------------------------------------------------------


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed)."""
    data = b""
    try:
        while chunk := await reader.read(65536):
            data += chunk
    except ConnectionError:
        pass
    return data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def dribble(
    writer: asyncio.StreamWriter, data: bytes, until: asyncio.Task[bytes], pause: float = 0.3
) -> None:
    """Send ``data`` a byte every ``pause`` seconds until ``until`` is done."""
    for byte in data:
        if until.done():
            return
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.wait({until}, timeout=pause)


def head(method: str, path: str, *extra: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- the tests ----------------------------------------------------------------------------


async def test_dribbled_headers_are_cut_off(served: ServedApi) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(served.host, served.port)
    opened = loop.time()
    closed = asyncio.create_task(read_until_closed(reader))
    await dribble(writer, head("GET", "/livez", "X-Padding: " + "a" * 200), closed)
    answer = await asyncio.wait_for(closed, HEADER_TIMEOUT + SLACK + 1)
    elapsed = loop.time() - opened
    writer.close()
    # Closed, unanswered (nothing was asked), once the header timeout passed and well
    # before the request could have been completed (~70 s at this pace).
    assert answer == b""
    assert HEADER_TIMEOUT * 0.9 <= elapsed < HEADER_TIMEOUT + SLACK, elapsed


async def test_slow_headers_after_a_kept_alive_response_are_cut_off(served: ServedApi) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(served.host, served.port)
    # Timed from the request: the server's timer starts when it answers, which is after
    # this and before the client has read the answer (on a loaded machine, a while before).
    asked = loop.time()
    writer.write(head("GET", "/livez"))
    status, headers, body = await read_response(reader)
    assert status == 200 and json.loads(body) == {"status": "alive"}
    assert "server" not in headers  # no Server header
    # The next request's first byte ends the keep-alive timeout (3 s); the header
    # timeout, counted from the response, still ends the connection.
    closed = asyncio.create_task(read_until_closed(reader))
    await dribble(writer, head("GET", "/livez", "X-Padding: " + "a" * 200), closed)
    answer = await asyncio.wait_for(closed, HEADER_TIMEOUT + SLACK + 1)
    elapsed = loop.time() - asked
    writer.close()
    assert answer == b""
    assert HEADER_TIMEOUT * 0.9 <= elapsed < min(KEEP_ALIVE, HEADER_TIMEOUT + SLACK), elapsed


async def test_a_dribbled_body_is_answered_408_and_closed(served: ServedApi) -> None:
    loop = asyncio.get_running_loop()
    body = json.dumps({"account_id": "nobody", "call_id": "c", "seconds": 10}).encode()
    reader, writer = await asyncio.open_connection(served.host, served.port)
    writer.write(
        head(
            "POST",
            "/v1/calls/usage",
            f"Authorization: Bearer {TELEPHONY_TOKEN}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        )
    )
    await writer.drain()
    sent_headers = loop.time()
    closed = asyncio.create_task(read_until_closed(reader))
    await dribble(writer, body, closed)
    answer = await asyncio.wait_for(closed, BODY_TIMEOUT + SLACK + 1)
    elapsed = loop.time() - sent_headers
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer
    payload = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert payload["error"] == "request_timeout" and payload["detail"]
    assert b"connection: close" in rest.lower()
    assert BODY_TIMEOUT * 0.9 <= elapsed < BODY_TIMEOUT + SLACK, elapsed


async def test_a_body_that_arrives_in_time_is_answered(served: ServedApi) -> None:
    body = json.dumps({"account_id": "nobody", "call_id": "c", "seconds": 10}).encode()
    reader, writer = await asyncio.open_connection(served.host, served.port)
    writer.write(
        head(
            "POST",
            "/v1/calls/usage",
            f"Authorization: Bearer {TELEPHONY_TOKEN}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        )
    )
    for part in (body[:10], body[10:20], body[20:]):  # in parts, within the timeout
        writer.write(part)
        await writer.drain()
        await asyncio.sleep(0.1)
    status, _, answer = await asyncio.wait_for(read_response(reader), 10)
    writer.close()
    assert status == 404 and json.loads(answer)["error"] == "unknown_account"


async def test_half_sent_requests_are_all_closed_and_their_fds_come_back(
    served: ServedApi,
) -> None:
    baseline = served.open_fds()
    loop = asyncio.get_running_loop()
    connections = [
        await asyncio.open_connection(served.host, served.port) for _ in range(HALF_SENT)
    ]
    opened = loop.time()
    for _, writer in connections:
        writer.write(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ")
    readers = [asyncio.create_task(read_until_closed(r)) for r, _ in connections]
    try:
        # They all hold a descriptor in the server now...
        # (Each is cut off HEADER_TIMEOUT after the server accepted it, so on a loaded
        # machine the first may be gone before the last arrive: the peak is what counts.)
        peak = baseline

        def held_at_once() -> bool:
            nonlocal peak
            peak = max(peak, served.open_fds())
            return peak >= baseline + HALF_SENT * 0.5

        await eventually(held_at_once, timeout=5, interval=0.02)
        # ...and a normal request is answered meanwhile.
        async with httpx.AsyncClient(base_url=served.base_url, timeout=10) as http:
            response = await http.get("/livez")
        assert response.status_code == 200
        # Every one of them is closed by the server, unanswered, after the timeout.
        answers = await asyncio.wait_for(asyncio.gather(*readers), HEADER_TIMEOUT + SLACK + 5)
        assert answers == [b""] * HALF_SENT
        assert loop.time() - opened >= HEADER_TIMEOUT * 0.9
        await eventually(lambda: served.open_fds() <= baseline + 5, timeout=5)
    finally:
        for _, writer in connections:
            writer.close()
        for task in readers:
            task.cancel()
    async with httpx.AsyncClient(base_url=served.base_url, timeout=10) as http:
        assert (await http.get("/livez")).status_code == 200


# --- the concurrency limit (an in-process server with the same configuration) ----------


@pytest.fixture
async def limited(settings: Settings, temporal_client: Client) -> AsyncIterator[uvicorn.Server]:
    tight = settings.model_copy(
        update={"http_limit_concurrency": 16, "http_header_timeout_seconds": 10.0}
    )
    config = build_config(
        tight,
        create_app(tight, client=temporal_client),
        host="127.0.0.1",
        port=free_port(),
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


async def test_beyond_the_concurrency_limit_the_answer_is_a_json_503(
    limited: uvicorn.Server,
) -> None:
    config = limited.config
    base = f"http://{config.host}:{config.port}"
    idle = [await asyncio.open_connection(config.host, config.port) for _ in range(20)]
    try:
        await eventually(lambda: len(limited.server_state.connections) >= 20, timeout=5)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            response = await http.get("/livez")
        assert response.status_code == 503
        assert response.json()["error"] == "overloaded" and response.json()["detail"]
        assert response.headers["retry-after"] == "1"
    finally:
        for _, writer in idle:
            writer.close()
    await eventually(lambda: len(limited.server_state.connections) < 16, timeout=5)
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await http.get("/livez")).status_code == 200
