"""Shared machinery of the benchmarks: the real stack as separate processes, and statistics.

Every benchmark starts its own stack on free loopback ports, in a temporary directory:
the Temporal dev server (``temporal server start-dev``, SQLite file), the Overtime worker
(``python -m worker``, so its memory can be measured), the HTTP API
(``python -m starter.serve``), an SMTP server that records when each message was
accepted, the fake Stripe server when asked, and the baseline's trivial worker
(``harness.trivial``) when asked. The benchmark process itself only generates load and
measures. ``StackOptions(api_processes=2, workers=2)`` (or ``Stack.add_api()`` /
``Stack.add_worker()`` while it runs) starts several API processes, each on its own port
(requests go to them round robin), and several workers on the same task queues.

``BENCH_SCALE=full`` selects the sizes the issue names; the default is sized for a
2-core machine shared with others (see BENCHMARKS.md). ``BENCH_DATABASE_URL`` points the
stack at another database (default: a fresh SQLite file).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from sqlalchemy import create_engine, text
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.client import Client

from devstack.mail_catcher import MailCatcher
from devstack.processes import loopback_dev_server_argv, stop_process
from overtime.observability import free_port

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "bench"
RESULTS_DIR = BENCH_DIR / "results"
CHART_DIR = ROOT / "docs" / "bench"
PYTHON = sys.executable
TEMPORAL_CLI = Path(PYTHON).parent / "temporal"
ADMIN_TOKEN = "bench-admin-token"
TELEPHONY_TOKEN = "bench-telephony-token"
FULL = os.environ.get("BENCH_SCALE", "").lower() == "full"
# The dev server keeps its state in memory (as the test suite's does) unless asked to use
# a SQLite file like `make run` (BENCH_TEMPORAL_DB=file): the file costs a disk sync per
# history write and measures the disk more than Temporal.
TEMPORAL_DB_FILE = os.environ.get("BENCH_TEMPORAL_DB", "").lower() == "file"


def scale(small: Any, full: Any) -> Any:
    return full if FULL else small


# --- statistics and output ------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: always a value that was measured."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * pct / 100)) - 1]


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def ratio(value: float, baseline: float) -> str:
    if not baseline or math.isnan(value) or math.isnan(baseline):
        return "-"
    return f"{value / baseline:.2f}×"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (pasted as is into BENCHMARKS.md)."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "scale": "full" if FULL else "small",
        "temporal_db": "sqlite file" if TEMPORAL_DB_FILE else "in memory",
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def save(name: str, results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), "at": time.time(), **results}
    payload["machine"]["load_average_at_end"] = payload["machine"].pop("load_average")
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"\nresults: {path.relative_to(ROOT)}")
    return path


@dataclass
class Latencies:
    """Latencies of one load level, and what went wrong."""

    samples: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    @property
    def throughput(self) -> float:
        return len(self.samples) / self.wall if self.wall else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "n": len(self.samples),
            "p50_ms": round(percentile(self.samples, 50) * 1000, 2),
            "p99_ms": round(percentile(self.samples, 99) * 1000, 2),
            "per_second": round(self.throughput, 1),
            "errors": self.errors,
            "error_kinds": self.error_kinds,
        }


async def closed_loop(
    concurrency: int,
    total: int,
    one: Callable[[int], Awaitable[None]],
    *,
    max_seconds: float = 60.0,
) -> Latencies:
    """``concurrency`` workers run ``one(i)`` for i in range(total), each timed.

    Bounded in count (``total``) and in time (``max_seconds``: workers stop taking new
    work after it). Exceptions are counted as errors by their type name.
    """
    result = Latencies()
    counter = iter(range(total))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds

    async def worker() -> None:
        for i in counter:
            if loop.time() > deadline:
                return
            started = time.perf_counter()
            try:
                await one(i)
            except Exception as err:
                result.error(type(err).__name__ + (f":{err}" if isinstance(err, Refused) else ""))
                continue
            result.samples.append(time.perf_counter() - started)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall = time.perf_counter() - began
    return result


class Refused(Exception):
    """An HTTP answer the benchmark did not expect (status or body)."""


def cpu_spent(
    before: dict[str, float], after: dict[str, float], names: Sequence[str] | None = None
) -> float:
    """CPU seconds the named processes (all, if None) used between two ``Stack.cpu()``."""
    return sum(after[n] - before.get(n, 0.0) for n in (after if names is None else names))


def cpu_ms_per(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """CPU milliseconds per operation, by process, between two ``Stack.cpu()`` snapshots."""
    return {
        name: round((after[name] - before.get(name, 0.0)) * 1000 / max(1, count), 3)
        for name in after
    }


# --- the ledger, as the database shows it -----------------------------------------------------


class LedgerWatch:
    """Polls the ledger (table ``usage_entry``) for sampled call ids and notes when each
    first appears: the lag from sending a usage report to its row.

    Only the database contract is used (how the worker gets the row there is the
    product's business). The poll interval bounds the resolution: a row is seen up to
    ``interval`` after it was committed (0.1 s against a target of 1 s).
    """

    def __init__(self, database_url: str, interval: float = 0.1) -> None:
        self.engine = create_engine(database_url)
        self.interval = interval
        self.sent: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self._stop = asyncio.Event()

    def _poll(self, sent: list[str]) -> list[str]:
        pending = [c for c in sent if c not in self.seen]
        if not pending:
            return []
        found: list[str] = []
        with self.engine.connect() as conn:
            for i in range(0, len(pending), 400):
                chunk = pending[i : i + 400]
                marks = ",".join(f":p{j}" for j in range(len(chunk)))
                rows = conn.execute(
                    text(f"SELECT call_id FROM usage_entry WHERE call_id IN ({marks})"),
                    {f"p{j}": c for j, c in enumerate(chunk)},
                )
                found += [r[0] for r in rows]
        return found

    async def run(self) -> None:
        while not self._stop.is_set():
            # A row a read finds was committed before the read began (give or take the
            # moment SQLite takes its snapshot): the read's start, not its end, which on a
            # busy machine can be tens of milliseconds later.
            began = time.time()
            # A copy taken on the event loop: the loop adds to ``sent`` while the thread reads.
            found = await asyncio.to_thread(self._poll, list(self.sent))
            for call_id in found:
                self.seen.setdefault(call_id, began)
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                pass

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until every sampled report has its row, then stop."""
        deadline = time.monotonic() + timeout
        while len(self.seen) < len(self.sent) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(self.interval)
        self.stop()

    def stop(self) -> None:
        self._stop.set()

    def lags(self) -> list[float]:
        return [max(0.0, self.seen[c] - self.sent[c]) for c in self.sent if c in self.seen]

    def rows_with_prefix(self, prefix: str) -> int:
        """Ledger rows whose call id starts with ``prefix`` (no ``%`` or ``_`` in it)."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT COUNT(*) FROM usage_entry WHERE call_id LIKE :p"),
                    {"p": prefix + "%"},
                ).scalar_one()
            )

    async def wait_for_rows(self, prefix: str, count: int, timeout: float) -> int:
        """Wait until ``count`` rows with ``prefix`` are in the ledger; how many there are."""
        deadline = time.monotonic() + timeout
        while True:
            found = await asyncio.to_thread(self.rows_with_prefix, prefix)
            if found >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        self.engine.dispose()


# --- processes ------------------------------------------------------------------------------


class Proc:
    """A child process with its output in a log file; stopped politely, then killed."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path):
        self.name, self.argv, self.env, self.log, self.cwd = name, argv, env, log, cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.popen = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def rss(self) -> int:
        return psutil.Process(self.pid).memory_info().rss

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process and its children so far."""
        try:
            process = psutil.Process(self.pid)
            total = sum(process.cpu_times()[:2])
            for child in process.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += sum(child.cpu_times()[:2])
            return total
        except psutil.Error:
            return 0.0

    def stop(self, timeout: float = 15) -> None:
        if self.popen is not None:
            stop_process(self.popen, timeout)
        self.popen = None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if await check():
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


# --- the stack -------------------------------------------------------------------------------


@dataclass
class StackOptions:
    period_seconds: int | None = 3600
    stripe: bool = False
    trivial_worker: bool = False
    stripe_requests_per_second: float | None = None
    # None: the setting's default (OVERTIME_WORKER_MAX_CACHED_WORKFLOWS)
    worker_cache: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    # Scale-out: this many API processes (each on its own port; Stack.request spreads the
    # requests over them round robin) and worker processes (sharing the task queues).
    # Processes are named "api", "api-2", … and "worker", "worker-2", ….
    api_processes: int = 1
    workers: int = 1


def is_kind(name: str, kind: str) -> bool:
    """Whether process ``name`` is one of the ``kind`` processes ("api", "api-2", …)."""
    return name == kind or name.startswith(kind + "-")


class Stack:
    """The whole product, each part in its own process, on this machine's loopback."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self.tmp = Path(tempfile.mkdtemp(prefix="overtime-bench-"))
        self.temporal_port = free_port()
        self.api_ports = [free_port() for _ in range(max(1, self.options.api_processes))]
        self.api_port = self.api_ports[0]
        self.task_queue = f"bench-{uuid.uuid4().hex[:8]}"
        self.database_url = os.environ.get("BENCH_DATABASE_URL") or (
            f"sqlite:///{self.tmp / 'overtime.db'}"
        )
        self.smtp = MailCatcher()  # it notes when each message arrived
        self.fake_stripe: Any = None
        self.procs: dict[str, Proc] = {}
        self.client: Client | None = None  # Overtime's encrypting converter
        self.plain_client: Client | None = None  # the baseline's default converter
        # aiohttp, not httpx: as a load generator it needs a fraction of httpx's CPU
        # (measured: 6.5 ms per request with httpx on this machine), CPU the stack needs.
        self.http: aiohttp.ClientSession | None = None
        self.base_url = f"http://127.0.0.1:{self.api_port}"  # the first API process
        # Every API process that answered /healthz; requests go to them round robin.
        self.base_urls: list[str] = []
        self._round_robin = itertools.count()

    # -- environment shared by the worker and the API ---------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OVERTIME_", "STRIPE_"))}
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), str(ROOT)]),
                "OVERTIME_DATA_DIR": str(self.tmp),
                "OVERTIME_DATABASE_URL": self.database_url,
                "OVERTIME_TEMPORAL_HOST": "127.0.0.1",
                "OVERTIME_TEMPORAL_PORT": str(self.temporal_port),
                "OVERTIME_TASK_QUEUE": self.task_queue,
                "OVERTIME_HTTP_HOST": "127.0.0.1",
                "OVERTIME_HTTP_PORT": str(self.api_port),
                "OVERTIME_SMTP_HOST": "127.0.0.1",
                "OVERTIME_SMTP_PORT": str(self.smtp.port),
                "OVERTIME_ADMIN_TOKEN": ADMIN_TOKEN,
                "OVERTIME_TELEPHONY_TOKEN": TELEPHONY_TOKEN,
                "OVERTIME_WORKER_METRICS_PORT": "0",
                "OVERTIME_LOG_FORMAT": "text",
                "OVERTIME_LOG_LEVEL": "WARNING",
                "OVERTIME_CODEC_ALLOW_LOOPBACK": "false",
                # Capacity, not shedding: closed loops of 64 clients on 2 cores queue for
                # longer than the 1 s production timeout, which would answer most of them
                # 503 (by design). BENCH_TELEPHONY_TIMEOUT=1 shows that instead.
                "OVERTIME_TELEPHONY_TIMEOUT_SECONDS": os.environ.get(
                    "BENCH_TELEPHONY_TIMEOUT", "20"
                ),
            }
        )
        if self.options.period_seconds:
            env["OVERTIME_PERIOD_SECONDS"] = str(self.options.period_seconds)
        if self.options.worker_cache is not None:
            env["OVERTIME_WORKER_MAX_CACHED_WORKFLOWS"] = str(self.options.worker_cache)
        if self.fake_stripe is not None:
            env["OVERTIME_STRIPE_API_BASE"] = self.fake_stripe.api_base
            env["STRIPE_API_KEY"] = self.fake_stripe.secret_key
            env["STRIPE_PUBLISHABLE_KEY"] = self.fake_stripe.publishable_key
        else:  # nothing listens here: payment routes fail fast, nothing else needs Stripe
            env["OVERTIME_STRIPE_API_BASE"] = f"http://127.0.0.1:{free_port()}"
        if self.options.stripe_requests_per_second:
            env["OVERTIME_STRIPE_REQUESTS_PER_SECOND"] = str(
                self.options.stripe_requests_per_second
            )
        env.update(self.options.extra_env)
        return env

    def _proc(self, name: str, argv: list[str], cwd: Path = ROOT) -> Proc:
        proc = Proc(name, argv, self.env(), self.tmp / f"{name}.log", cwd)
        self.procs[name] = proc
        return proc

    # -- start and stop ---------------------------------------------------------------

    async def __aenter__(self) -> Stack:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _start(self) -> None:
        from overtime.settings import Settings
        from overtime.temporal import data_converter_for

        self.smtp.start()
        if self.options.stripe:
            from devstack.fake_stripe import FakeStripe

            self.fake_stripe = await asyncio.to_thread(FakeStripe().start)
        self.start_temporal()
        address = f"127.0.0.1:{self.temporal_port}"

        async def temporal_up() -> bool:
            client = await Client.connect(address, runtime=quiet_runtime())
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace="default")
            )
            self.plain_client = client
            return True

        await wait_until(temporal_up, 60, "the Temporal dev server")
        assert self.plain_client is not None
        self.client = Client(
            self.plain_client.service_client,
            namespace="default",
            data_converter=data_converter_for(Settings()),
        )
        for _ in range(max(1, self.options.workers)):
            self.start_worker()
        if self.options.trivial_worker:
            self._proc(
                "trivial",
                [PYTHON, "-m", "harness.trivial", "--address", address],
                cwd=BENCH_DIR,
            ).start()
        for port in self.api_ports:
            self._start_api(port)
        self.http = aiohttp.ClientSession(
            # Idle connections are dropped by the client before the server's keep-alive
            # timeout (OVERTIME_HTTP_KEEP_ALIVE_SECONDS, 5 s) closes them: otherwise a
            # request after a pause can be sent on a connection the server is closing
            # (ClientOSError, connection reset), which is the race, not the product.
            connector=aiohttp.TCPConnector(limit=400, keepalive_timeout=2.0),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        try:
            for port in self.api_ports:
                await self._wait_healthy(f"http://127.0.0.1:{port}")
            await self.wait_for_workers(len(self.worker_names()))
        except RuntimeError:
            for proc in self.procs.values():
                print(f"--- {proc.name} log:\n{proc.tail()}", file=sys.stderr)
            raise

    def _next_name(self, kind: str) -> str:
        count = sum(1 for name in self.procs if is_kind(name, kind))
        return kind if count == 0 else f"{kind}-{count + 1}"

    def _start_api(self, port: int) -> Proc:
        return self._proc(
            self._next_name("api"),
            [
                PYTHON,
                "-m",
                "starter.serve",  # the production server, with its limits
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
        ).start()

    async def _wait_healthy(self, base_url: str) -> None:
        """Until the API at ``base_url`` answers /healthz 200; then it takes requests."""

        async def healthy() -> bool:
            status, _ = await self.request("GET", "/healthz", None, {}, base_url=base_url)
            return status == 200

        await wait_until(healthy, 90, f"the API at {base_url} (with a polling worker)")
        if base_url not in self.base_urls:
            self.base_urls.append(base_url)

    async def wait_for_workers(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` worker processes poll the workflow task queue (Temporal lists
        each poller's identity, pid@host by default)."""
        assert self.plain_client is not None
        service = self.plain_client.workflow_service

        async def polling() -> bool:
            answer = await service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace="default",
                    task_queue=TaskQueue(name=self.task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                )
            )
            return len({poller.identity for poller in answer.pollers}) >= count

        await wait_until(polling, timeout, f"{count} workers polling")

    async def add_api(self) -> Proc:
        """One more API process on a port of its own; in the round robin once healthy."""
        port = free_port()
        self.api_ports.append(port)
        proc = self._start_api(port)
        await self._wait_healthy(f"http://127.0.0.1:{port}")
        return proc

    async def add_worker(self) -> Proc:
        """One more worker process; returns once it polls. Workflows already cached by
        the others stay theirs (sticky queues): only new workflows, or ones evicted, are
        spread over all workers."""
        proc = self.start_worker()
        await self.wait_for_workers(len(self.worker_names()))
        return proc

    def api_names(self) -> list[str]:
        return [name for name in self.procs if is_kind(name, "api")]

    def worker_names(self) -> list[str]:
        return [name for name in self.procs if is_kind(name, "worker")]

    def product_names(self) -> list[str]:
        """The processes a telephony request costs CPU in: the Temporal dev server, every
        worker and every API process (not the load generator, not the trivial worker)."""
        return ["temporal", *self.worker_names(), *self.api_names()]

    def baseline_names(self) -> list[str]:
        """The processes a bare Update or signal costs CPU in: the dev server, the
        trivial worker."""
        return ["temporal", "trivial"]

    def start_temporal(self) -> None:
        # SQLite in a file, as `make run` has it: every history write is synced to disk.
        db_file = self.tmp / "temporal.db" if TEMPORAL_DB_FILE else None
        argv = loopback_dev_server_argv(TEMPORAL_CLI, self.temporal_port, db_file)
        self._proc("temporal", argv).start()

    def start_worker(self) -> Proc:
        return self._proc(self._next_name("worker"), [PYTHON, "-m", "worker"]).start()

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.close()
        # The APIs first (nothing new reaches the workers), the workers before the server.
        for group in (self.api_names(), ["trivial"], self.worker_names(), ["temporal"]):
            procs = [self.procs[name] for name in group if name in self.procs]
            await asyncio.gather(*(asyncio.to_thread(proc.stop) for proc in procs))
        if self.fake_stripe is not None:
            await asyncio.to_thread(self.fake_stripe.stop)
        self.smtp.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the API as a telephony backend and an admin would use it -----------------------

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    @property
    def telephony(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TELEPHONY_TOKEN}"}

    async def request(
        self,
        method: str,
        path: str,
        body: Any,
        headers: dict[str, str],
        *,
        base_url: str | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON body or None). Sent to ``base_url``, or else to the API
        processes in turn (round robin, as a load balancer would)."""
        assert self.http is not None
        if base_url is None:
            base_url = self.base_urls[next(self._round_robin) % len(self.base_urls)]
        async with self.http.request(
            method, base_url + path, json=body, headers=headers
        ) as response:
            raw = await response.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = raw[:200].decode("utf-8", "replace")
            return response.status, payload

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        status, payload = await self.request("POST", path, body, headers)
        if status >= 300:
            raise Refused(f"{path} {status} {str(payload)[:200]}")
        return payload

    async def put(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        status, payload = await self.request("PUT", path, body, headers)
        if status >= 300:
            raise Refused(f"{path} {status} {str(payload)[:200]}")
        return payload

    async def create_accounts(
        self,
        count: int,
        *,
        prefix: str,
        plan: str = "starter",
        limit: dict[str, int] | None = None,
        concurrency: int = 16,
    ) -> list[str]:
        """Accounts (their workflows started), with extra minutes up to ``limit`` if given."""
        ids = [f"{prefix}-{i}" for i in range(count)]

        async def one(i: int) -> None:
            account = ids[i]
            await self.post(
                "/v1/accounts",
                {
                    "account_id": account,
                    "email": f"{account}@example.com",
                    "plan": plan,
                    "locale": "en",
                },
                self.admin,
            )
            if limit is not None:
                await self.post(
                    f"/v1/accounts/{account}/payment-method",
                    {"payment_method_id": "pm_card_visa"},
                    self.admin,
                )
                await self.put(
                    f"/v1/accounts/{account}/extra-minutes", {"enabled": True, **limit}, self.admin
                )

        result = await closed_loop(concurrency, count, one, max_seconds=1800)
        if result.errors:
            raise RuntimeError(f"account set-up failed: {result.error_kinds}")
        return ids

    async def authorize(self, account: str, call_id: str) -> dict[str, Any]:
        return await self.post(
            "/v1/calls/authorize", {"account_id": account, "call_id": call_id}, self.telephony
        )

    async def usage(self, account: str, call_id: str, seconds: int) -> dict[str, Any]:
        return await self.post(
            "/v1/calls/usage",
            {"account_id": account, "call_id": call_id, "seconds": seconds},
            self.telephony,
        )

    async def state(self, account: str) -> dict[str, Any]:
        status, payload = await self.request(
            "GET", f"/v1/accounts/{account}/state", None, self.admin
        )
        if status != 200:
            raise Refused(f"state {status} {payload}")
        return payload

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each part of the stack and by this process."""
        used = {name: proc.cpu_seconds() for name, proc in self.procs.items()}
        used["load generator"] = sum(psutil.Process().cpu_times()[:2])
        return used

    async def settled_cpu(
        self, names: Sequence[str], *, window: float = 0.5, timeout: float = 20.0
    ) -> dict[str, float]:
        """``cpu()`` once the named processes have gone (nearly) idle after a load.

        Work a load leaves behind (signals a trivial workflow has yet to process, ledger
        writes batched on a timer) belongs to that load's cost: this waits until a window
        of ``window`` seconds in which the processes used under 5 % of one core together,
        and returns the snapshot taken at that window's start, so the idle wait itself
        adds (almost) nothing to the figure.
        """
        deadline = time.monotonic() + timeout
        last = self.cpu()
        while True:
            await asyncio.sleep(window)
            now = self.cpu()
            if cpu_spent(last, now, names) < 0.05 * window or time.monotonic() > deadline:
                return last
            last = now

    async def history_length(self, workflow_id: str, run_id: str | None = None) -> int:
        assert self.client is not None
        handle = self.client.get_workflow_handle(workflow_id, run_id=run_id)
        history = await handle.fetch_history()
        return len(history.events)


@contextlib.asynccontextmanager
async def stack(options: StackOptions | None = None) -> AsyncIterator[Stack]:
    async with Stack(options) as running:
        yield running


_RUNTIME: Any = None


def quiet_runtime() -> Any:
    """A Temporal runtime whose core logs only errors (the baseline's clients meet
    RESOURCE_EXHAUSTED on purpose; the SDK would warn about every retry)."""
    global _RUNTIME
    if _RUNTIME is None:
        from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

        _RUNTIME = Runtime(
            telemetry=TelemetryConfig(
                logging=LoggingConfig(
                    filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")
                )
            )
        )
    return _RUNTIME


def header(title: str) -> None:
    print(f"\n## {title}\n")
    info = machine()
    print(
        f"machine: {info['cpus']} CPUs ({info['cpu_model']}), {info['memory_gib']} GiB, "
        f"Python {info['python']}; load average at start {info['load_average']}; "
        f"scale: {info['scale']}; Temporal dev server state {info['temporal_db']}"
    )
