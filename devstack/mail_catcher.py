"""A local SMTP server (aiosmtpd) that keeps every message it receives.

Each message is written as an ``.eml`` file under ``mail_dir`` (when given) and kept in
memory for tests. Tests can make it behave like a difficult relay: refuse every message
for a while (451, an outage), refuse some recipients for good (550), or not offer
SMTPUTF8 (``smtputf8=False``: non-ASCII addresses cannot be sent).

``python -m devstack.mail_catcher --port 2525 --dir var/mail`` runs it on its own; the
test suite and ``make run`` embed it.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import signal
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class CaughtMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    path: Path | None
    received_at: float  # time.time() when the DATA arrived (the benchmarks' notice latency)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def to(self) -> str:
        return str(self.message["To"])

    def header(self, name: str) -> str | None:
        value = self.message[name]
        return None if value is None else str(value)

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""


@dataclass
class _Handler:
    mail_dir: Path | None
    messages: list[CaughtMail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    refuse: bool = False  # tests: simulate an SMTP outage
    refused_recipients: set[str] = field(default_factory=set)  # tests: 550 for these

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if address.lower() in self.refused_recipients:
            return "550 5.1.1 mailbox unavailable (mail catcher refusing on purpose)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return "451 4.3.0 mail catcher refusing on purpose (simulated outage)"
        received_at = time.time()
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            path = None
            if self.mail_dir is not None:
                self.mail_dir.mkdir(parents=True, exist_ok=True)
                path = self.mail_dir / f"{time.time_ns()}-{len(self.messages):06d}.eml"
                path.write_bytes(raw)
            self.messages.append(
                CaughtMail(
                    str(envelope.mail_from), list(envelope.rcpt_tos), message, path, received_at
                )
            )
        return "250 Message accepted for delivery"


class MailCatcher:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        mail_dir: Path | None = None,
        *,
        smtputf8: bool = True,
    ):
        self._handler = _Handler(mail_dir)
        self._controller = Controller(
            self._handler,
            hostname=host,
            port=port or _free_port(host),
            enable_SMTPUTF8=smtputf8,  # real relays offer it; tests may switch it off
        )
        self.host = host

    @property
    def port(self) -> int:
        return self._controller.port

    def start(self) -> MailCatcher:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def set_refusing(self, refuse: bool) -> None:
        self._handler.refuse = refuse

    def refuse_recipient(self, address: str, refuse: bool = True) -> None:
        """Answer RCPT TO for ``address`` with a permanent 550 (or stop doing so)."""
        if refuse:
            self._handler.refused_recipients.add(address.lower())
        else:
            self._handler.refused_recipients.discard(address.lower())

    @property
    def messages(self) -> list[CaughtMail]:
        with self._handler.lock:
            return list(self._handler.messages)

    def to(self, address: str) -> list[CaughtMail]:
        return [m for m in self.messages if address in m.rcpt_tos]

    def with_notice(self, address: str, kind: str) -> list[CaughtMail]:
        return [m for m in self.to(address) if m.header("X-Overtime-Notice") == kind]


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description="Local SMTP catcher writing .eml files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--dir", type=Path, default=Path("var/mail"))
    args = parser.parse_args()
    catcher = MailCatcher(args.host, args.port, args.dir).start()
    print(f"mail catcher on smtp://{args.host}:{catcher.port}, writing {args.dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    catcher.stop()


if __name__ == "__main__":
    main()
