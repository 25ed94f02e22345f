"""``overtime``: the admin command line over the HTTP API.

Everything goes through the public HTTP API (never the database or Temporal directly), so
the CLI works against any deployment the tokens open and exercises the same contract the
telephony backend and the admin tools use. ``overtime --help`` lists the commands;
``overtime simulate`` plays telephony traffic for demos and smoke tests. The one exception
is ``overtime stripe-smoke`` (``starter/stripe_smoke.py``): it talks to Stripe test mode
through the product's Stripe gateway, to check Stripe behaves as our tests assume.

The package: ``parser`` (arguments), ``commands`` (one function per command),
``simulate`` (the load simulator), ``render`` (what is printed), ``progress`` (bars on
stderr), ``exits`` (exit codes); the API itself is called through ``overtime.client``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

import httpx

from overtime.client import ApiError, Endpoint, default_api_url
from starter.cli.exits import (
    EXIT_API_ERROR,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SIMULATION_ERRORS,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
)
from starter.cli.parser import build_parser, parse_eur, positive_int, positive_number
from starter.cli.render import fmt_duration, fmt_eur, render_state, render_summary, table
from starter.cli.simulate import percentile, plan_durations

__all__ = [
    "EXIT_API_ERROR",
    "EXIT_CODES_HELP",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SIMULATION_ERRORS",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CliError",
    "build_parser",
    "default_api_url",
    "fmt_duration",
    "fmt_eur",
    "main",
    "parse_eur",
    "percentile",
    "plan_durations",
    "positive_int",
    "positive_number",
    "render_state",
    "render_summary",
    "table",
]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _url_source(api: str, env: Mapping[str, str] = os.environ) -> str:
    """Where the URL the CLI could not reach came from, so the hint names what to change."""
    if api.rstrip("/") != default_api_url(env).rstrip("/"):
        return "--api"
    if env.get("OVERTIME_API_URL"):
        return "OVERTIME_API_URL"
    given = [name for name in ("OVERTIME_HTTP_HOST", "OVERTIME_HTTP_PORT") if env.get(name)]
    return " and ".join(given) if given else "the defaults (OVERTIME_HTTP_HOST/_PORT unset)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script passes it to sys.exit)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or bad arguments (2, message already printed)
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    endpoint = Endpoint(args.api.rstrip("/"), args.admin_token, args.telephony_token)
    try:
        if not endpoint.base_url.startswith(("http://", "https://")):
            raise CliError(f"--api must be an http(s) URL, not {args.api!r}", EXIT_USAGE)
        return int(args.handler(args, endpoint))
    except ApiError as err:
        _say(f"error: {err.message}")
        return EXIT_API_ERROR
    except CliError as err:
        _say(f"error: {err.message}")
        if err.hint:
            _say(f"hint: {err.hint}")
        return err.exit_code
    except httpx.TransportError as err:
        _say(f"error: cannot reach the API at {endpoint.base_url}: {err or type(err).__name__}")
        _say(f"hint: that URL is from {_url_source(args.api)}; is the API running there?")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
