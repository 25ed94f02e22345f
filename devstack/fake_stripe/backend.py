"""localstripe as the fake's child process: started, awaited, stopped.

The child is ``python -m devstack.fake_stripe.localstripe_main`` (patched localstripe on a
free loopback port, printed on its stdout). It sits in a session of its own, so a Ctrl-C
meant for the parent is the parent's to relay, and it exits when its stdin closes, so a
parent that dies never leaks it. Its stderr goes to a temporary log whose tail explains a
failed start.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from devstack.processes import stop_process

CHILD_MODULE = "devstack.fake_stripe.localstripe_main"


class LocalstripeProcess:
    """One localstripe child; ``start()`` returns its base URL once it answers."""

    def __init__(self, startup_timeout: float) -> None:
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> str:
        log_fd, log_name = tempfile.mkstemp(prefix="fake-stripe-", suffix=".log")
        self._log = Path(log_name)
        with open(log_fd, "wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", CHILD_MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # a Ctrl-C meant for the parent is ours to relay
            )
        port = self._read_port_line(self._process)
        deadline = time.monotonic() + self._startup_timeout
        while True:  # the port is bound before run_app serves; wait for an answer
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return f"http://127.0.0.1:{port}"
            except OSError as error:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError(f"localstripe did not start: {self._tail()}") from error
                time.sleep(0.05)

    def _read_port_line(self, process: subprocess.Popen[bytes]) -> int:
        stdout = process.stdout
        assert stdout is not None
        result: list[bytes] = []
        # readline() has no timeout; a helper thread bounds the wait on a hung child.
        reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self._startup_timeout)
        line = result[0].strip() if result else b""
        if not line.isdigit():
            raise RuntimeError(f"localstripe did not start: {self._tail()}")
        return int(line)

    def _tail(self) -> str:
        if self._log is None or not self._log.exists():
            return "(no log)"
        return self._log.read_text(errors="replace")[-2000:] or "(empty log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                if process.stdin is not None:
                    process.stdin.close()  # localstripe_main exits on EOF
            stop_process(process, 5, kill_timeout=5)
            if process.stdout is not None:
                process.stdout.close()
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None
