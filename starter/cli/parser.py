"""The command line's arguments: ``overtime --help`` and each command's ``--help``.

Values are checked here (amounts exactly, in cents), so a bad argument is refused with exit
code 2 before any request; the defaults of ``--api`` and the tokens come from the same
variables the server reads (``overtime.client``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from overtime import formatting
from overtime.client import default_admin_token, default_api_url, default_telephony_token
from starter.cli.commands import (
    cmd_accounts_create,
    cmd_close_report,
    cmd_extra_minutes,
    cmd_notifications,
    cmd_payment_method,
    cmd_plans,
    cmd_simulate,
    cmd_state,
    cmd_stripe_smoke,
)
from starter.cli.exits import EXIT_CODES_HELP


def parse_eur(text: str) -> int:
    """``"50"``, ``"50.5"``, ``"50,50"``, ``"1.234,50"``, ``"1,234.50"`` → cents, exactly.

    German and English are both read (``formatting.parse_amount`` without a locale), and
    what could be either is refused: ``1,000`` is not guessed to be a thousand or one euro.
    """
    try:
        cents = formatting.parse_amount(text)
    except formatting.AmountError as problem:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an amount in EUR with at most two decimals (e.g. 50 or 49.90): "
            f"{problem}"
        ) from None
    if cents <= 0:
        raise argparse.ArgumentTypeError("the limit must be more than 0.00 EUR")
    return cents


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_number(text: str) -> float:
    # Call lengths only (never money): a float mean is fine here.
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 86_400 * 7:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of seconds")
    return value


def _token_source(variable: str) -> str:
    # Which token is in use, never the token itself (--help output ends up in tickets).
    return f"now from {variable}" if variable in os.environ else "now the dev token"


def _progress_flag(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar on stderr (there is none anyway when stderr is not a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="overtime",
        description="Admin command line for Overtime (talks to the HTTP API).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--api",
        default=default_api_url(),
        help="API base URL (env OVERTIME_API_URL, else http://OVERTIME_HTTP_HOST:"
        "OVERTIME_HTTP_PORT; now %(default)s)",
    )
    parser.add_argument(
        "--admin-token",
        default=default_admin_token(),
        help="admin bearer token (env OVERTIME_ADMIN_TOKEN, else the dev token; "
        f"{_token_source('OVERTIME_ADMIN_TOKEN')})",
    )
    parser.add_argument(
        "--telephony-token",
        default=default_telephony_token(),
        help="telephony bearer token (env OVERTIME_TELEPHONY_TOKEN, else the dev token; "
        f"{_token_source('OVERTIME_TELEPHONY_TOKEN')})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, handler: Callable[..., int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    def json_flag(
        sub: argparse.ArgumentParser, help_text: str = "print the API's JSON answer"
    ) -> None:
        sub.add_argument("--json", action="store_true", help=help_text)

    json_flag(command("plans", "list the plans", cmd_plans))

    accounts = commands.add_parser("accounts", help="manage accounts", description="accounts")
    account_commands = accounts.add_subparsers(
        dest="accounts_command", required=True, metavar="ACTION"
    )
    create = account_commands.add_parser(
        "create",
        help="create an account",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.set_defaults(handler=cmd_accounts_create)
    create.add_argument("account_id", metavar="ACCOUNT_ID")
    create.add_argument("--email", required=True)
    create.add_argument("--plan", required=True, help="a plan id (see `overtime plans`)")
    create.add_argument("--locale", choices=("de", "en"))
    create.add_argument("--timezone", help="IANA zone, e.g. Europe/Berlin")
    json_flag(create)

    extra = command(
        "extra-minutes", "enable extra minutes with a limit, or disable them", cmd_extra_minutes
    )
    extra.add_argument("account_id", metavar="ACCOUNT_ID")
    which = extra.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--limit-eur", type=parse_eur, metavar="EUR", help="spending limit in EUR, e.g. 50.00"
    )
    which.add_argument(
        "--limit-cents", type=positive_int, metavar="N", help="spending limit in cents"
    )
    which.add_argument(
        "--limit-minutes", type=positive_int, metavar="N", help="limit in extra minutes"
    )
    which.add_argument("--disable", action="store_true", help="turn extra minutes off")
    json_flag(extra)

    payment = command(
        "payment-method", "attach a payment method (Stripe id) to an account", cmd_payment_method
    )
    payment.add_argument("account_id", metavar="ACCOUNT_ID")
    payment.add_argument(
        "payment_method_id",
        metavar="PAYMENT_METHOD_ID",
        help="e.g. pm_card_visa with the fake Stripe",
    )
    json_flag(payment)

    state = command("state", "show an account's live billing state", cmd_state)
    state.add_argument("account_id", metavar="ACCOUNT_ID")
    json_flag(state)

    notes = command("notifications", "list the notices sent to an account", cmd_notifications)
    notes.add_argument("account_id", metavar="ACCOUNT_ID")
    json_flag(notes)

    close = command(
        "close-report",
        "run or show a month-end close report (PERIOD like 2026-11)",
        cmd_close_report,
    )
    close.add_argument("period", metavar="PERIOD")
    close.add_argument("--run", action="store_true", help="run the close now, then show it")
    close.add_argument(
        "--wait-seconds",
        type=int,
        default=None,
        help="with --run: how long the close waits for unclosed periods",
    )
    close.add_argument("--timeout", type=float, default=60.0, help="with --run: seconds to wait")
    close.add_argument("--csv", action="store_true", help="print the report's CSV")
    _progress_flag(close)
    json_flag(close)

    sim = command(
        "simulate",
        "play telephony traffic: authorise, re-authorise as grants run out, report usage "
        "(in simulated time: calls do not really last their length)",
        cmd_simulate,
    )
    sim.add_argument(
        "--accounts",
        type=positive_int,
        default=3,
        metavar="N",
        help="accounts to create or reuse (default %(default)s)",
    )
    sim.add_argument(
        "--account-prefix",
        default="sim",
        metavar="PREFIX",
        help="account ids are PREFIX-1..PREFIX-N (default %(default)s)",
    )
    sim.add_argument(
        "--plans",
        default="starter,business",
        metavar="P1,P2",
        help="plans assigned round-robin (default %(default)s)",
    )
    sim_limit = sim.add_mutually_exclusive_group()
    sim_limit.add_argument(
        "--limit-eur", type=parse_eur, metavar="EUR", help="extra-minutes limit on paid plans"
    )
    sim_limit.add_argument(
        "--limit-cents",
        type=positive_int,
        default=1000,
        metavar="N",
        help="extra-minutes limit in cents (default %(default)s)",
    )
    sim_limit.add_argument(
        "--limit-minutes", type=positive_int, metavar="N", help="extra-minutes limit in minutes"
    )
    sim.add_argument(
        "--calls",
        type=positive_int,
        default=50,
        metavar="M",
        help="calls in total (default %(default)s)",
    )
    sim.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        metavar="C",
        help="calls at once per account (default %(default)s)",
    )
    sim.add_argument(
        "--duration",
        type=positive_number,
        default=180.0,
        metavar="SECONDS",
        help="mean call length (default %(default)s)",
    )
    sim.add_argument(
        "--distribution",
        choices=("exponential", "uniform", "fixed"),
        default="exponential",
        help="call length distribution (default %(default)s)",
    )
    sim.add_argument("--seed", type=int, default=None, help="random seed for reproducible runs")
    _progress_flag(sim)
    json_flag(sim, "print the summary (and each account's final state) as JSON")

    smoke = command(
        "stripe-smoke",
        "walk one billing period through Stripe test mode (STRIPE_API_KEY=sk_test_...)",
        cmd_stripe_smoke,
    )
    smoke.description = (
        "Walk one billing period through Stripe with the product's Stripe gateway: customer, "
        "SetupIntent, tax rate, an invoice paid, a decline and its retry, a card declined at "
        "attach, SEPA processing until paid. STRIPE_API_KEY=sk_test_... talks to Stripe test "
        "mode; without it, the local fake Stripe at OVERTIME_STRIPE_API_BASE."
    )
    smoke.epilog = (
        "exit codes:\n"
        "  0    every step as Stripe documents it\n"
        "  1    a step's result was another (stderr: error: STEP: what Stripe answered)\n"
        "  2    refused: a live key (sk_live_/rk_live_), or settings that do not parse\n"
        "  3    Stripe could not be reached\n"
        "  130  interrupted (Ctrl-C; what was created is still cleaned up)\n"
    )
    smoke.add_argument(
        "--keep", action="store_true", help="leave the customer and its invoices in Stripe"
    )
    smoke.add_argument(
        "--sepa-failure",
        action="store_true",
        help="also walk a SEPA debit that fails after processing (pm_failed_de)",
    )
    smoke.add_argument(
        "--sepa-timeout",
        type=positive_number,
        default=300.0,
        metavar="SECONDS",
        help="how long a SEPA debit may stay processing (default %(default)s)",
    )
    smoke.add_argument(
        "--account-id",
        default=None,
        metavar="ID",
        help="the account id in the Stripe metadata (default: smoke-<UTC time>-<random>)",
    )
    smoke.add_argument(
        "--events",
        action="store_true",
        help="also wait for each invoice's events (invoice.finalized, .paid, .payment_failed) "
        "in Stripe's event list: what `stripe listen` forwards as webhooks",
    )
    return parser
