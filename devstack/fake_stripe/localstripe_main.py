"""localstripe's process as the fake runs it: ``python -m devstack.fake_stripe.localstripe_main``.

Why not localstripe's own ``localstripe`` script: it binds every interface (``::``) and
persists its store to a fixed path (see ``localstripe_patches``). This runs the same
``localstripe.server.app`` with the patches applied, on 127.0.0.1 and a free port, which
it prints as the first line of its stdout; it exits when its parent's end of its stdin
pipe closes, so a killed parent never leaks it.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

from aiohttp import web
from localstripe import server

from devstack.fake_stripe import localstripe_patches


def _exit_with_parent() -> None:
    sys.stdin.buffer.read()  # EOF once the parent has closed the pipe or died
    os._exit(0)


def main() -> None:
    localstripe_patches.apply()
    threading.Thread(target=_exit_with_parent, daemon=True).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    web.run_app(server.app, sock=sock, access_log=None, print=None)


if __name__ == "__main__":
    main()
