"""``overtime``: the admin command line over the HTTP API.

Everything goes through the public HTTP API (never the database or Temporal directly), so
the CLI works against any deployment the tokens open and exercises the same contract the
telephony backend and the admin tools use. ``overtime --help`` lists the commands;
``overtime simulate`` plays telephony traffic for demos and smoke tests. The one exception
is ``overtime stripe-smoke`` (``starter/stripe_smoke.py``): it talks to Stripe test mode
through the product's Stripe gateway, to check Stripe behaves as our tests assume.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import httpx

from overtime import formatting
from overtime.settings import Settings

# --- exit codes (also printed by --help) ------------------------------------------------

EXIT_OK = 0
EXIT_API_ERROR = 1
EXIT_USAGE = 2  # argparse's own code for bad arguments, kept for our checks too
EXIT_UNREACHABLE = 3
EXIT_SIMULATION_ERRORS = 4
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    the API refused the request ("error: CODE: detail" on stderr)
  2    bad command-line input
  3    the API could not be reached
  4    simulate: some requests failed (see the summary's errors)
  130  interrupted (Ctrl-C)
"""

DEFAULT_API_URL = "http://127.0.0.1:8000"
# The payment method the demo seeding and simulate attach when enabling extra minutes
# needs one on file (Stripe's test card; the fake Stripe server accepts it too).
DEMO_PAYMENT_METHOD = "pm_card_visa"
REQUEST_TIMEOUT_SECONDS = 30.0  # above the API's dispatch deadline (20 s by default)


class CliError(Exception):
    """A failure to report as ``error: MESSAGE`` with ``exit_code``."""

    def __init__(self, message: str, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint


class ApiFailure(CliError):
    """The API answered with an error body ``{"error", "detail"}``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}", EXIT_API_ERROR)
        self.status = status
        self.code = code
        self.detail = detail


def _setting_default(name: str) -> str:
    # Read the one default instead of instantiating Settings: a malformed unrelated
    # OVERTIME_* variable must not stop an admin from using the CLI.
    return str(Settings.model_fields[name].default)


def default_api_url(env: Mapping[str, str] = os.environ) -> str:
    """``OVERTIME_API_URL``, else the API this machine's settings start: the same
    ``OVERTIME_HTTP_HOST`` / ``OVERTIME_HTTP_PORT`` the server and ``make run`` use (an
    all-interfaces bind is reached on loopback)."""
    if env.get("OVERTIME_API_URL"):
        return env["OVERTIME_API_URL"]
    host = env.get("OVERTIME_HTTP_HOST") or _setting_default("http_host")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = env.get("OVERTIME_HTTP_PORT") or _setting_default("http_port")
    return f"http://{host}:{port}"


def error_of(response: httpx.Response) -> ApiFailure:
    try:
        body = response.json()
        code, detail = str(body["error"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        code, detail = f"http_{response.status_code}", response.text.strip()[:500]
    return ApiFailure(response.status_code, code, detail)


def checked(response: httpx.Response) -> Any:
    """The JSON body of a successful answer; :class:`ApiFailure` for 4xx/5xx."""
    if response.status_code >= 400:
        raise error_of(response)
    return response.json()


@dataclass(frozen=True)
class Endpoint:
    """Where the API is and which tokens to use."""

    base_url: str
    admin_token: str
    telephony_token: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def telephony(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.telephony_token}"}

    def sync_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_SECONDS)

    def async_client(self, connections: int = 20) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(
            base_url=self.base_url, timeout=REQUEST_TIMEOUT_SECONDS, limits=limits
        )


# --- money and durations ----------------------------------------------------------------


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


# Amounts as operators read (and paste back) them: "1234.50 EUR", "-" for none.
fmt_eur = formatting.money_code


def fmt_duration(seconds: int | None) -> str:
    """``750`` → ``12 min 30 s``; exact, no rounding."""
    if seconds is None:
        return "-"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if secs or not parts:
        parts.append(f"{secs} s")
    return " ".join(parts)


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    all_rows = [list(header)] if header else []
    all_rows += [list(r) for r in rows]
    if not all_rows:
        return ""
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(all_rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in all_rows
    ]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --- shared admin helpers (simulate and devstack seeding use them) -----------------------


async def ensure_account(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    account_id: str,
    *,
    email: str,
    plan: str,
    locale: str | None = None,
    timezone: str | None = None,
) -> bool:
    """Create the account; True if created now, False if it already existed (409)."""
    body: dict[str, Any] = {"account_id": account_id, "email": email, "plan": plan}
    if locale:
        body["locale"] = locale
    if timezone is not None:
        body["timezone"] = timezone
    response = await client.post("/v1/accounts", json=body, headers=endpoint.admin)
    if response.status_code == 409 and error_of(response).code == "account_exists":
        return False
    checked(response)
    return True


async def enable_extra_minutes(
    client: httpx.AsyncClient, endpoint: Endpoint, account_id: str, limit: dict[str, int]
) -> dict[str, Any] | None:
    """Enable extra minutes with ``limit``, attaching a test card if the API wants one.

    Returns the new settings, or None when the API requires a payment method but has no
    endpoint to attach one yet (404): the caller carries on without extra minutes.
    """
    path = f"/v1/accounts/{account_id}/extra-minutes"
    body = {"enabled": True, **limit}
    response = await client.put(path, json=body, headers=endpoint.admin)
    if response.status_code == 409 and error_of(response).code == "payment_method_required":
        attach = await client.post(
            f"/v1/accounts/{account_id}/payment-method",
            json={"payment_method_id": DEMO_PAYMENT_METHOD},
            headers=endpoint.admin,
        )
        if attach.status_code == 404:
            return None
        checked(attach)
        response = await client.put(path, json=body, headers=endpoint.admin)
    return checked(response)


# --- commands ---------------------------------------------------------------------------


def _print(text: str = "") -> None:
    print(text, flush=True)


def cmd_plans(args: argparse.Namespace, endpoint: Endpoint) -> int:
    with endpoint.sync_client() as client:
        plans = checked(client.get("/v1/plans"))
    if args.json:
        _print(json.dumps(plans, indent=2))
        return EXIT_OK
    rows = [
        [
            p["plan"],
            fmt_eur(p["monthly_fee_cents"]),
            f"{p['included_minutes']} min",
            fmt_eur(p["extra_minute_price_cents"]) + "/min"
            if p["extra_minute_price_cents"]
            else "-",
        ]
        for p in plans
    ]
    _print(table(rows, ["plan", "monthly fee", "included", "extra minute"]))
    return EXIT_OK


def cmd_accounts_create(args: argparse.Namespace, endpoint: Endpoint) -> int:
    body: dict[str, Any] = {"account_id": args.account_id, "email": args.email, "plan": args.plan}
    if args.locale:
        body["locale"] = args.locale
    if args.timezone is not None:
        body["timezone"] = args.timezone
    with endpoint.sync_client() as client:
        account = checked(client.post("/v1/accounts", json=body, headers=endpoint.admin))
    if args.json:
        _print(json.dumps(account, indent=2))
    else:
        _print(
            f"created account {account['account_id']} on plan {account['plan']} "
            f"({account['email']}, {account['locale']}, {account['timezone']})"
        )
    return EXIT_OK


def cmd_extra_minutes(args: argparse.Namespace, endpoint: Endpoint) -> int:
    if args.disable:
        body: dict[str, Any] = {"enabled": False}
    elif args.limit_minutes is not None:
        body = {"enabled": True, "limit_minutes": args.limit_minutes}
    else:
        cents = args.limit_eur if args.limit_eur is not None else args.limit_cents
        body = {"enabled": True, "limit_cents": cents}
    path = f"/v1/accounts/{args.account_id}/extra-minutes"
    with endpoint.sync_client() as client:
        try:
            result = checked(client.put(path, json=body, headers=endpoint.admin))
        except ApiFailure as err:
            if err.code == "payment_method_required":
                err.hint = f"attach one first: overtime payment-method {args.account_id} PM_ID"
            raise
    if args.json:
        _print(json.dumps(result, indent=2))
        return EXIT_OK
    if not result["enabled"]:
        _print(f"extra minutes disabled for {args.account_id}")
    else:
        _print(
            f"extra minutes enabled for {args.account_id}: limit {_limit_text(result)} "
            f"(= {fmt_duration(result['extra_allowed_seconds'])} of extra calls)"
        )
    if not result.get("accepting_calls", True):
        _print(f"note: the account is not accepting calls ({result.get('stop_reason')})")
    return EXIT_OK


def cmd_payment_method(args: argparse.Namespace, endpoint: Endpoint) -> int:
    path = f"/v1/accounts/{args.account_id}/payment-method"
    body = {"payment_method_id": args.payment_method_id}
    with endpoint.sync_client() as client:
        result = checked(client.post(path, json=body, headers=endpoint.admin))
    if args.json:
        _print(json.dumps(result, indent=2))
        return EXIT_OK
    what = result.get("type") or "payment method"
    if result.get("brand"):
        what += f" {result['brand']}"
    if result.get("last4"):
        what += f" ending {result['last4']}"
    _print(f"attached {what} ({result.get('id')}) to {args.account_id}")
    return EXIT_OK


def _limit_text(settings: dict[str, Any]) -> str:
    if settings.get("limit_cents") is not None:
        return fmt_eur(settings["limit_cents"])
    if settings.get("limit_minutes") is not None:
        return f"{settings['limit_minutes']} min"
    return "-"


STATE_FIELDS = (
    "period_start",
    "period_end",
    "plan",
    "included_seconds",
    "used_seconds",
    "extra_seconds",
    "extra_cost_cents",
    "enabled",
    "limit_cents",
    "limit_minutes",
    "extra_allowed_seconds",
    "reserved_seconds",
    "accepting_calls",
    "stop_reason",
    "payment_method_on_file",
    "payment_overdue",
    "undelivered_notices",
    "undelivered_events",
    "unwritten_usage",
    "extra_minute_price_cents",
    "monthly_fee_cents",
    "alert_percents",
)


def render_state(account_id: str, state: dict[str, Any]) -> str:
    used, included = state["used_seconds"], state["included_seconds"]
    extra_line = "off"
    if state["enabled"]:
        extra_line = (
            f"on, limit {_limit_text(state)} "
            f"(= {fmt_duration(state['extra_allowed_seconds'])} of extra calls)"
        )
    rows = [
        ("account", account_id),
        ("plan", state["plan"]),
        ("period", f"{state['period_start']}  to  {state['period_end']}"),
        ("used", f"{fmt_duration(used)} of {fmt_duration(included)} included ({used} s)"),
        (
            "extra used",
            f"{fmt_duration(state['extra_seconds'])} = {fmt_eur(state['extra_cost_cents'])}",
        ),
        ("extra minutes", extra_line),
        ("reserved", f"{fmt_duration(state['reserved_seconds'])} granted to running calls"),
        ("accepting calls", "yes" if state["accepting_calls"] else "NO"),
        ("stop reason", state.get("stop_reason") or "-"),
    ]
    if "payment_method_on_file" in state:
        rows.append(("payment method", "on file" if state["payment_method_on_file"] else "none"))
    if "payment_overdue" in state:
        rows.append(("payment", "OVERDUE" if state["payment_overdue"] else "ok"))
    waiting = [
        f"{state[key]} {what}"
        for key, what in (
            ("undelivered_notices", "notices"),
            ("undelivered_events", "webhooks"),
            ("unwritten_usage", "ledger rows"),
        )
        if state.get(key)
    ]
    if waiting:  # a receiver, the mail relay or the database is down
        rows.append(("pending", ", ".join(waiting)))
    if state.get("extra_minute_price_cents") is not None:
        rows.append(("price", f"{fmt_eur(state['extra_minute_price_cents'])} per extra minute"))
    if state.get("monthly_fee_cents") is not None:
        rows.append(("monthly fee", fmt_eur(state["monthly_fee_cents"])))
    if state.get("alert_percents"):
        rows.append(("alerts at", ", ".join(f"{p} %" for p in state["alert_percents"])))
    # Fields the API adds later still show up, just without pretty formatting, in a table
    # of their own (their long names do not push the columns above apart).
    later = [(k.replace("_", " "), str(v)) for k, v in state.items() if k not in STATE_FIELDS]
    return table(rows) + ("\n\n" + table(later) if later else "")


def cmd_state(args: argparse.Namespace, endpoint: Endpoint) -> int:
    with endpoint.sync_client() as client:
        state = checked(client.get(f"/v1/accounts/{args.account_id}/state", headers=endpoint.admin))
    _print(json.dumps(state, indent=2) if args.json else render_state(args.account_id, state))
    return EXIT_OK


def cmd_notifications(args: argparse.Namespace, endpoint: Endpoint) -> int:
    with endpoint.sync_client() as client:
        rows = checked(
            client.get(f"/v1/accounts/{args.account_id}/notifications", headers=endpoint.admin)
        )
    if args.json:
        _print(json.dumps(rows, indent=2))
    elif not rows:
        _print(f"no notifications for {args.account_id}")
    else:
        _print(
            table(
                [(n["sent_at"], n["kind"], n["to"], n["period_start"]) for n in rows],
                ["sent at", "kind", "to", "period start"],
            )
        )
    return EXIT_OK


# --- simulate ---------------------------------------------------------------------------


@dataclass
class SimCall:
    account_id: str
    call_id: str
    planned_seconds: int


@dataclass
class SimStats:
    calls: int = 0
    allowed: int = 0  # the first authorisation was granted
    refused: int = 0  # refused at the first authorisation
    cut_short: int = 0  # granted at first, refused before the planned length
    reasons: Counter[str] = field(default_factory=Counter)
    billed_seconds: int = 0
    planned_seconds: int = 0
    authorize_requests: int = 0
    usage_reports: int = 0
    duplicates: int = 0
    errors: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    authorize_latencies: list[float] = field(default_factory=list)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation: it is always a measured value)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * pct / 100))
    return ordered[rank - 1]


def plan_durations(rng: random.Random, count: int, mean: float, distribution: str) -> list[int]:
    """Call lengths in whole seconds, at least 1 s, capped at 4 h."""
    lengths = []
    for _ in range(count):
        if distribution == "fixed":
            value = mean
        elif distribution == "uniform":
            value = rng.uniform(0, 2 * mean)
        else:  # exponential: many short calls, a few long ones, like real phone traffic
            value = rng.expovariate(1 / mean)
        lengths.append(min(4 * 3600, max(1, round(value))))
    return lengths


async def _sim_call(
    client: httpx.AsyncClient, endpoint: Endpoint, call: SimCall, stats: SimStats
) -> None:
    """One call as the telephony backend places it: ask, re-ask while talking, report."""
    granted = 0
    first = True
    refused_reason: str | None = None
    try:
        while granted < call.planned_seconds:
            started = time.perf_counter()
            response = await client.post(
                "/v1/calls/authorize",
                json={"account_id": call.account_id, "call_id": call.call_id},
                headers=endpoint.telephony,
            )
            stats.authorize_latencies.append(time.perf_counter() - started)
            stats.authorize_requests += 1
            answer = checked(response)
            if not answer["allowed"]:
                refused_reason = str(answer.get("reason") or "unknown")
                break
            granted += int(answer["granted_seconds"])
            if first:
                stats.allowed += 1
            first = False
        if first:  # never granted a second: the call is not connected, nothing to report
            stats.refused += 1
            stats.reasons[refused_reason or "unknown"] += 1
            return
        if refused_reason is not None:
            stats.cut_short += 1
            stats.reasons[refused_reason] += 1
        talked = min(call.planned_seconds, granted)
        result = checked(
            await client.post(
                "/v1/calls/usage",
                json={"account_id": call.account_id, "call_id": call.call_id, "seconds": talked},
                headers=endpoint.telephony,
            )
        )
        stats.usage_reports += 1
        if result.get("duplicate"):
            stats.duplicates += 1
        else:
            stats.billed_seconds += talked
    except ApiFailure as err:
        stats.errors += 1
        stats.error_kinds[err.code] += 1
    except httpx.HTTPError as err:
        stats.errors += 1
        stats.error_kinds[type(err).__name__] += 1


async def _simulate(args: argparse.Namespace, endpoint: Endpoint) -> dict[str, Any]:
    rng = random.Random(args.seed)
    wanted_plans = [p.strip() for p in args.plans.split(",") if p.strip()]
    limit: dict[str, int]
    if args.limit_minutes is not None:
        limit = {"limit_minutes": args.limit_minutes}
    else:
        limit = {"limit_cents": args.limit_eur if args.limit_eur is not None else args.limit_cents}
    connections = max(10, args.accounts * args.concurrency + 5)
    async with endpoint.async_client(connections) as client:
        catalog = {p["plan"]: p for p in checked(await client.get("/v1/plans"))}
        unknown = [p for p in wanted_plans if p not in catalog]
        if unknown or not wanted_plans:
            raise CliError(
                f"unknown plan(s) {', '.join(unknown) or '(none given)'}; "
                f"known: {', '.join(catalog)}",
                EXIT_USAGE,
            )
        accounts: list[dict[str, Any]] = []
        for index in range(1, args.accounts + 1):
            plan = wanted_plans[(index - 1) % len(wanted_plans)]
            account_id = f"{args.account_prefix}-{index}"
            created = await ensure_account(
                client, endpoint, account_id, email=f"{account_id}@example.com", plan=plan
            )
            extra = "n/a (plan without extra minutes)"
            terms = catalog[plan]
            if terms["monthly_fee_cents"] > 0 and terms["extra_minute_price_cents"] > 0:
                enabled = await enable_extra_minutes(client, endpoint, account_id, limit)
                extra = _limit_text(limit) if enabled else "off (no payment method endpoint)"
            accounts.append(
                {"account_id": account_id, "plan": plan, "created": created, "extra": extra}
            )

        run_id = uuid.uuid4().hex[:8]  # not from the seed: reruns must not reuse call ids
        lengths = plan_durations(rng, args.calls, args.duration, args.distribution)
        calls = [
            SimCall(accounts[n % len(accounts)]["account_id"], f"sim-{run_id}-{n + 1}", length)
            for n, length in enumerate(lengths)
        ]
        stats = SimStats(calls=len(calls), planned_seconds=sum(lengths))
        gates = {a["account_id"]: asyncio.Semaphore(args.concurrency) for a in accounts}

        async def run_one(call: SimCall) -> None:
            async with gates[call.account_id]:
                await _sim_call(client, endpoint, call, stats)

        started = time.perf_counter()
        await asyncio.gather(*(run_one(c) for c in calls))
        wall = time.perf_counter() - started

        for account in accounts:
            response = await client.get(
                f"/v1/accounts/{account['account_id']}/state", headers=endpoint.admin
            )
            account["state"] = checked(response) if response.status_code < 400 else None

    p50 = percentile(stats.authorize_latencies, 50)
    p99 = percentile(stats.authorize_latencies, 99)
    return {
        "calls": stats.calls,
        "allowed": stats.allowed,
        "refused": stats.refused,
        "cut_short": stats.cut_short,
        "reasons": dict(stats.reasons),
        "planned_seconds": stats.planned_seconds,
        "billed_seconds": stats.billed_seconds,
        "authorize_requests": stats.authorize_requests,
        "usage_reports": stats.usage_reports,
        "duplicates": stats.duplicates,
        "errors": stats.errors,
        "error_kinds": dict(stats.error_kinds),
        "authorize_p50_ms": None if p50 is None else round(p50 * 1000, 2),
        "authorize_p99_ms": None if p99 is None else round(p99 * 1000, 2),
        "wall_seconds": round(wall, 3),
        "seed": args.seed,
        "accounts": accounts,
    }


def render_summary(summary: dict[str, Any], args: argparse.Namespace) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(summary["reasons"].items())) or "-"
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(summary["error_kinds"].items()))
    lines = [
        f"simulated {summary['calls']} calls on {len(summary['accounts'])} accounts "
        f"(concurrency {args.concurrency} per account, {args.distribution} lengths, "
        f"mean {args.duration:g} s, seed {summary['seed']}) in {summary['wall_seconds']:.2f} s",
        table(
            [
                ("allowed", f"{summary['allowed']} ({summary['cut_short']} cut short)"),
                ("refused", str(summary["refused"])),
                ("reasons", reasons),
                (
                    "billed",
                    f"{summary['billed_seconds']} s = {fmt_duration(summary['billed_seconds'])} "
                    f"(planned {summary['planned_seconds']} s)",
                ),
                (
                    "authorize",
                    f"{summary['authorize_requests']} requests, "
                    f"p50 {ms(summary['authorize_p50_ms'])}, "
                    f"p99 {ms(summary['authorize_p99_ms'])}",
                ),
                ("usage reports", f"{summary['usage_reports']} ({summary['duplicates']} dup)"),
                ("errors", f"{summary['errors']}" + (f" ({kinds})" if kinds else "")),
            ]
        ),
        "",
    ]
    rows = []
    for account in summary["accounts"]:
        state = account.get("state") or {}
        rows.append(
            (
                account["account_id"],
                account["plan"],
                "new" if account["created"] else "reused",
                str(account["extra"]),
                f"{state.get('used_seconds', '?')} s",
                fmt_eur(state.get("extra_cost_cents")),
                "yes" if state.get("accepting_calls") else (state.get("stop_reason") or "?"),
            )
        )
    lines.append(
        table(rows, ["account", "plan", "status", "extra limit", "used", "extra cost", "accepting"])
    )
    return "\n".join(lines)


def cmd_close_report(args: argparse.Namespace, endpoint: Endpoint) -> int:
    """Run (``--run``) and/or show a month-end close report, as a table or CSV."""
    path = f"/v1/reports/close/{args.period}"
    with endpoint.sync_client() as client:
        if args.run:
            params = {} if args.wait_seconds is None else {"wait_seconds": args.wait_seconds}
            checked(client.post(path, headers=endpoint.admin, params=params))
            deadline = time.monotonic() + args.timeout
            while True:
                response = client.get(path, headers=endpoint.admin)
                if response.status_code != 404 or time.monotonic() > deadline:
                    break
                time.sleep(1)
        if args.csv:
            response = client.get(path, headers=endpoint.admin, params={"format": "csv"})
            if response.status_code >= 400:
                raise error_of(response)
            _print(response.text.rstrip("\n"))
            return EXIT_OK
        report = checked(client.get(path, headers=endpoint.admin))
    if args.json:
        _print(json.dumps(report, indent=2))
        return EXIT_OK
    _print(
        table(
            [
                ("period", report["period"]),
                ("accounts", str(report["accounts"])),
                ("extra minutes", formatting.minutes(report["extra_seconds"], "en")),
                ("invoiced", fmt_eur(report["invoiced_cents"])),
                ("paid", fmt_eur(report["paid_cents"])),
                ("failed", fmt_eur(report["failed_cents"])),
                ("pending", fmt_eur(report["pending_cents"])),
                ("stopped at limit", str(report["accounts_stopped_at_limit"])),
                ("mismatches", str(report["mismatches"])),
            ]
        )
    )
    for line in report["lines"]:
        if line["mismatch"]:
            _print(f"mismatch: {line['account_id']}: {line['mismatch']}")
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace, endpoint: Endpoint) -> int:
    summary = asyncio.run(_simulate(args, endpoint))
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


# --- argument parsing -------------------------------------------------------------------


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
        default=os.environ.get("OVERTIME_ADMIN_TOKEN", _setting_default("admin_token")),
        help="admin bearer token (env OVERTIME_ADMIN_TOKEN; default: the dev token)",
    )
    parser.add_argument(
        "--telephony-token",
        default=os.environ.get("OVERTIME_TELEPHONY_TOKEN", _setting_default("telephony_token")),
        help="telephony bearer token (env OVERTIME_TELEPHONY_TOKEN; default: the dev token)",
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


def _fail(message: str, code: int) -> NoReturn:
    raise CliError(message, code)


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
            _fail(f"--api must be an http(s) URL, not {args.api!r}", EXIT_USAGE)
        return int(args.handler(args, endpoint))
    except CliError as err:
        print(f"error: {err.message}", file=sys.stderr, flush=True)
        if err.hint:
            print(f"hint: {err.hint}", file=sys.stderr, flush=True)
        return err.exit_code
    except httpx.TransportError as err:
        print(
            f"error: cannot reach the API at {endpoint.base_url}: {err or type(err).__name__}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
