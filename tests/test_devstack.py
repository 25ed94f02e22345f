"""``python -m devstack.run`` end to end: up, seeded, a call, Ctrl-C, restart, state kept.

The runner is started exactly as a developer starts it (a subprocess, SIGINT to stop),
on free ports and a temporary data dir, twice on the same data dir.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = [
    pytest.mark.slow,
    # The runner keeps its own SQLite file in its data dir; a second pass with
    # OVERTIME_TEST_DATABASE_URL (PostgreSQL) would only repeat the same run.
    pytest.mark.skipif(
        bool(os.environ.get("OVERTIME_TEST_DATABASE_URL")),
        reason="the dev stack does not use OVERTIME_TEST_DATABASE_URL",
    ),
]

ADMIN = {"Authorization": "Bearer devstack-admin"}
TELEPHONY = {"Authorization": "Bearer devstack-telephony"}
UP_TIMEOUT = 60.0
READY_LINE = "Press Ctrl-C to stop."


@dataclass
class Ports:
    http: int
    temporal: int
    ui: int
    smtp: int
    stripe: int
    worker_metrics: int


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def child_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"started \w+ \(pid (\d+)\)", self.output())]


def stack_env(data_dir: Path, ports: Ports) -> dict[str, str]:
    # Only what we set: a developer's own settings (or real Stripe key) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OVERTIME_", "STRIPE_"))}
    env.update(
        {
            "OVERTIME_DATA_DIR": str(data_dir),
            "OVERTIME_HTTP_PORT": str(ports.http),
            "OVERTIME_TEMPORAL_PORT": str(ports.temporal),
            "OVERTIME_TEMPORAL_UI_PORT": str(ports.ui),
            "OVERTIME_SMTP_PORT": str(ports.smtp),
            "OVERTIME_STRIPE_PORT": str(ports.stripe),
            "OVERTIME_WORKER_METRICS_PORT": str(ports.worker_metrics),
            "OVERTIME_ADMIN_TOKEN": ADMIN["Authorization"].split()[1],
            "OVERTIME_TELEPHONY_TOKEN": TELEPHONY["Authorization"].split()[1],
        }
    )
    return env


def start(data_dir: Path, ports: Ports, log: Path) -> Run:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.run", "--stop-timeout", "10"],
        env=stack_env(data_dir, ports),
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Run(proc, log)


def wait_up(run: Run) -> None:
    deadline = time.monotonic() + UP_TIMEOUT
    while READY_LINE not in run.output():
        if run.proc.poll() is not None:
            pytest.fail(f"devstack exited with {run.proc.returncode}:\n{run.output()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"devstack not up within {UP_TIMEOUT:.0f} s:\n{run.output()[-4000:]}")
        time.sleep(0.2)


def stop(run: Run) -> int:
    run.proc.send_signal(signal.SIGINT)
    try:
        return run.proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        run.proc.kill()
        run.proc.wait()
        pytest.fail(f"devstack did not stop after SIGINT:\n{run.output()[-4000:]}")


def processes_of(data_dir: Path) -> list[int]:
    """Live processes whose environment points at ``data_dir`` (the stack's children)."""
    marker = f"OVERTIME_DATA_DIR={data_dir}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def assert_all_gone(run: Run, data_dir: Path) -> None:
    pids = run.child_pids()
    assert len(pids) >= 4, run.output()  # temporal, mail, worker, api (+ stripe)
    deadline = time.monotonic() + 5
    while True:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
        alive += processes_of(data_dir)
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not alive, f"left behind: {alive}\n{run.output()[-3000:]}"


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def wait_for_metric(url: str, name: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(url, timeout=5).text
        if name in text:
            return text
        time.sleep(0.3)
    raise AssertionError(f"{name} not exported at {url}: {text[-1000:]}")


def test_devstack_runs_stops_cleanly_and_keeps_state(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    ports = Ports(free_port(), free_port(), free_port(), free_port(), free_port(), free_port())
    base = f"http://127.0.0.1:{ports.http}"

    first = start(data_dir, ports, tmp_path / "first.log")
    try:
        wait_up(first)
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.get("/healthz").status_code == 200
            assert httpx.get(f"http://127.0.0.1:{ports.ui}/", timeout=10).status_code == 200
            states = {
                account: http.get(f"/v1/accounts/{account}/state", headers=ADMIN)
                for account in ("demo-free", "demo-starter", "demo-business", "demo-new")
            }
            assert {a: r.status_code for a, r in states.items()} == dict.fromkeys(states, 200)
            assert {a: r.json()["plan"] for a, r in states.items()} == {
                "demo-free": "free",
                "demo-starter": "starter",
                "demo-business": "business",
                "demo-new": "starter",
            }
            # The help article's first step: a paid plan, nothing set up yet.
            first_time = states["demo-new"].json()
            assert (first_time["enabled"], first_time["payment_method_on_file"]) == (False, False)
            # The Temporal UI on its moved port may call the codec server (CORS preflight).
            ui_origin = f"http://127.0.0.1:{ports.ui}"
            preflight = http.options(
                "/codec/decode",
                headers={
                    "Origin": ui_origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type,x-namespace",
                },
            )
            assert preflight.status_code == 200, preflight.text
            assert preflight.headers["access-control-allow-origin"] == ui_origin
            call = {"account_id": "demo-starter", "call_id": "devstack-call-1"}
            grant = http.post("/v1/calls/authorize", json=call, headers=TELEPHONY).json()
            assert grant["allowed"] is True, grant
            usage = http.post(
                "/v1/calls/usage", json={**call, "seconds": 90}, headers=TELEPHONY
            ).json()
            assert usage == {"recorded": True, "duplicate": False}
            state = http.get("/v1/accounts/demo-starter/state", headers=ADMIN).json()
            assert state["used_seconds"] == 90
            # Prometheus: the API's own counters beside the Temporal SDK's runtime metrics,
            # and the worker's (seconds billed) on its own port.
            api_metrics = http.get("/metrics").text
            assert re.search(r'overtime_authorizations\{[^}]*result="granted"', api_metrics)
            assert "temporal_request" in api_metrics
            worker_metrics = wait_for_metric(
                f"http://127.0.0.1:{ports.worker_metrics}/metrics", "overtime_seconds_billed"
            )
            billed = re.search(
                r'overtime_seconds_billed\{[^}]*kind="included"[^}]*\} (\d+)', worker_metrics
            )
            assert billed and int(billed.group(1)) >= 90, worker_metrics[-2000:]
        output = first.output()
        # Readable text logs at the terminal (JSON stays the default elsewhere).
        assert re.search(r"worker +\| \S+ \S+ INFO overtime\.worker: ", output), output[-3000:]
        assert '"logger": "overtime.worker"' not in output
        assert "/login   demo-starter@example.com / demo-password" in output
        assert "First steps      " in output and "demo-new@example.com / demo-password" in output
        assert "no web login" not in output  # the demo customers can sign in
        assert "devstack | started temporal" in output  # child output is prefixed
        assert f"Temporal gRPC    127.0.0.1:{ports.temporal}" in output
        assert (data_dir / "temporal.db").exists()
        assert (data_dir / "overtime.db").exists()
    finally:
        code = stop(first)
    assert code == 0, first.output()[-4000:]
    assert "all stopped" in first.output()
    assert_all_gone(first, data_dir)

    second = start(data_dir, ports, tmp_path / "second.log")
    try:
        wait_up(second)
        with httpx.Client(base_url=base, timeout=30) as http:
            state = http.get("/v1/accounts/demo-starter/state", headers=ADMIN).json()
            assert state["used_seconds"] == 90
            again = http.post(
                "/v1/calls/usage",
                json={"account_id": "demo-starter", "call_id": "devstack-call-1", "seconds": 90},
                headers=TELEPHONY,
            ).json()
            assert again == {"recorded": True, "duplicate": True}  # the ledger remembers
        assert "demo account demo-starter (starter) exists, kept as is" in second.output()
    finally:
        code = stop(second)
    assert code == 0, second.output()[-4000:]
    assert_all_gone(second, data_dir)
