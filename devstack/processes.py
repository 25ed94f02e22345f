"""Child processes that the tests and the benchmarks start, stop and restart themselves."""

from __future__ import annotations

import subprocess
from pathlib import Path

from overtime.observability import free_port


def loopback_dev_server_argv(cli: Path, port: int, db_file: Path | None = None) -> list[str]:
    """A headless Temporal dev server on 127.0.0.1:``port`` (HTTP and metrics on free ports)
    with Updates switched on. ``db_file``: its state in SQLite, so that it survives a
    restart; otherwise in memory."""
    argv = [
        str(cli),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        str(free_port()),
        "--metrics-port",
        str(free_port()),
        "--headless",
        "--log-level",
        "error",
        "--dynamic-config-value",
        "frontend.enableUpdateWorkflowExecution=true",
    ]
    if db_file is not None:
        argv += ["--db-filename", str(db_file)]
    return argv


def stop_process(proc: subprocess.Popen[bytes], timeout: float, kill_timeout: float = 10) -> None:
    """SIGTERM and wait up to ``timeout``; a process that does not go is killed."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_timeout)
