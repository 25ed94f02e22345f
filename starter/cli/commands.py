"""The commands: each one asks the API through ``overtime.client`` and prints the answer
(``render``) or its JSON (``--json``). ``parser.py`` wires them to their arguments."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from overtime.client import ApiError, Endpoint, OvertimeClient
from starter.cli.exits import EXIT_API_ERROR, EXIT_OK, EXIT_SIMULATION_ERRORS, CliError
from starter.cli.progress import progress
from starter.cli.render import (
    fmt_duration,
    limit_text,
    render_close_report,
    render_notifications,
    render_plans,
    render_state,
    render_summary,
)
from starter.cli.simulate import simulate

CLOSE_POLL_SECONDS = 1.0


def _print(text: str = "") -> None:
    print(text, flush=True)


def _print_json(answer: Any) -> None:
    _print(json.dumps(answer, indent=2))


def cmd_plans(args: argparse.Namespace, endpoint: Endpoint) -> int:
    with OvertimeClient(endpoint) as api:
        plans = api.plans()
    if args.json:
        _print_json(plans)
    else:
        _print(render_plans(plans))
    return EXIT_OK


def cmd_accounts_create(args: argparse.Namespace, endpoint: Endpoint) -> int:
    with OvertimeClient(endpoint) as api:
        account = api.create_account(
            args.account_id,
            email=args.email,
            plan=args.plan,
            locale=args.locale,
            timezone=args.timezone,
        )
    if args.json:
        _print_json(account)
    else:
        _print(
            f"created account {account['account_id']} on plan {account['plan']} "
            f"({account['email']}, {account['locale']}, {account['timezone']})"
        )
    return EXIT_OK


def _extra_minutes_settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.disable:
        return {"enabled": False}
    if args.limit_minutes is not None:
        return {"enabled": True, "limit_minutes": args.limit_minutes}
    cents = args.limit_eur if args.limit_eur is not None else args.limit_cents
    return {"enabled": True, "limit_cents": cents}


def cmd_extra_minutes(args: argparse.Namespace, endpoint: Endpoint) -> int:
    with OvertimeClient(endpoint) as api:
        try:
            result = api.set_extra_minutes(args.account_id, _extra_minutes_settings(args))
        except ApiError as err:
            if err.error == "payment_method_required":
                hint = f"attach one first: overtime payment-method {args.account_id} PM_ID"
                raise CliError(err.message, EXIT_API_ERROR, hint) from err
            raise
    if args.json:
        _print_json(result)
        return EXIT_OK
    if not result["enabled"]:
        _print(f"extra minutes disabled for {args.account_id}")
    else:
        _print(
            f"extra minutes enabled for {args.account_id}: limit {limit_text(result)} "
            f"(= {fmt_duration(result['extra_allowed_seconds'])} of extra calls)"
        )
    if not result.get("accepting_calls", True):
        _print(f"note: the account is not accepting calls ({result.get('stop_reason')})")
    return EXIT_OK


def cmd_payment_method(args: argparse.Namespace, endpoint: Endpoint) -> int:
    with OvertimeClient(endpoint) as api:
        result = api.attach_payment_method(args.account_id, args.payment_method_id)
    if args.json:
        _print_json(result)
        return EXIT_OK
    what = result.get("type") or "payment method"
    if result.get("brand"):
        what += f" {result['brand']}"
    if result.get("last4"):
        what += f" ending {result['last4']}"
    _print(f"attached {what} ({result.get('id')}) to {args.account_id}")
    return EXIT_OK


def cmd_state(args: argparse.Namespace, endpoint: Endpoint) -> int:
    with OvertimeClient(endpoint) as api:
        state = api.state(args.account_id)
    if args.json:
        _print_json(state)
    else:
        _print(render_state(args.account_id, state))
    return EXIT_OK


def cmd_notifications(args: argparse.Namespace, endpoint: Endpoint) -> int:
    with OvertimeClient(endpoint) as api:
        rows = api.notifications(args.account_id)
    if args.json:
        _print_json(rows)
    elif not rows:
        _print(f"no notifications for {args.account_id}")
    else:
        _print(render_notifications(rows))
    return EXIT_OK


def _wait_for_close_report(api: OvertimeClient, args: argparse.Namespace) -> None:
    """Poll until the report exists (or ``--timeout`` passes; the read after says which)."""
    deadline = time.monotonic() + args.timeout
    with progress(f"close {args.period}", None, enabled=not args.no_progress):
        while not api.close_report_ready(args.period) and time.monotonic() <= deadline:
            time.sleep(CLOSE_POLL_SECONDS)


def cmd_close_report(args: argparse.Namespace, endpoint: Endpoint) -> int:
    """Run (``--run``) and/or show a month-end close report, as a table or CSV."""
    with OvertimeClient(endpoint) as api:
        if args.run:
            api.start_close(args.period, args.wait_seconds)
            _wait_for_close_report(api, args)
        if args.csv:
            _print(api.close_report_csv(args.period).rstrip("\n"))
            return EXIT_OK
        report = api.close_report(args.period)
    if args.json:
        _print_json(report)
    else:
        _print(render_close_report(report))
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace, endpoint: Endpoint) -> int:
    summary = asyncio.run(simulate(args, endpoint))
    _print(json.dumps(summary, indent=2) if args.json else render_summary(summary, args))
    return EXIT_SIMULATION_ERRORS if summary["errors"] else EXIT_OK


def cmd_stripe_smoke(args: argparse.Namespace, endpoint: Endpoint) -> int:
    # Talks to Stripe, not to our API (endpoint unused). Imported here: the stripe SDK
    # costs a third of a second that the other commands need not pay.
    from starter.stripe_smoke import SmokeOptions, run_smoke

    options = SmokeOptions(
        keep=args.keep,
        sepa_failure=args.sepa_failure,
        sepa_timeout_seconds=args.sepa_timeout,
        account_id=args.account_id,
        events=args.events,
    )
    return run_smoke(options)
