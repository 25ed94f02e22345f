"""``overtime simulate``: telephony traffic played against the API, in simulated time.

Each call asks ``/v1/calls/authorize`` for seconds, asks again while the grant runs out,
then reports what it "talked" to ``/v1/calls/usage``, as the telephony backend does; no
call really lasts its length. The summary counts what the API allowed, refused and billed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from overtime.client import ApiError, AsyncOvertimeClient, Endpoint
from starter.cli.exits import EXIT_USAGE, CliError
from starter.cli.progress import Advance, progress
from starter.cli.render import limit_text


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

    def count_authorize(self, seconds: float) -> None:
        self.authorize_latencies.append(seconds)
        self.authorize_requests += 1


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


async def sim_call(api: AsyncOvertimeClient, call: SimCall, stats: SimStats) -> None:
    """One call as the telephony backend places it: ask, re-ask while talking, report."""
    granted = 0
    first = True
    refused_reason: str | None = None
    try:
        while granted < call.planned_seconds:
            started = time.perf_counter()
            try:
                answer = await api.authorize(call.account_id, call.call_id)
            except ApiError:  # an error answer (4xx/5xx) was still a measured round trip
                stats.count_authorize(time.perf_counter() - started)
                raise
            stats.count_authorize(time.perf_counter() - started)
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
        result = await api.report_usage(call.account_id, call.call_id, talked)
        stats.usage_reports += 1
        if result.get("duplicate"):
            stats.duplicates += 1
        else:
            stats.billed_seconds += talked
    except ApiError as err:
        stats.errors += 1
        stats.error_kinds[err.error] += 1
    except httpx.HTTPError as err:
        stats.errors += 1
        stats.error_kinds[type(err).__name__] += 1


def _limit(args: argparse.Namespace) -> dict[str, int]:
    if args.limit_minutes is not None:
        return {"limit_minutes": args.limit_minutes}
    return {"limit_cents": args.limit_eur if args.limit_eur is not None else args.limit_cents}


async def _prepare_accounts(
    api: AsyncOvertimeClient, args: argparse.Namespace, advance: Advance
) -> list[dict[str, Any]]:
    """Create (or reuse) PREFIX-1..PREFIX-N, extra minutes on where the plan sells them."""
    wanted_plans = [p.strip() for p in args.plans.split(",") if p.strip()]
    catalog = {p["plan"]: p for p in await api.plans()}
    unknown = [p for p in wanted_plans if p not in catalog]
    if unknown or not wanted_plans:
        raise CliError(
            f"unknown plan(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(catalog)}",
            EXIT_USAGE,
        )
    limit = _limit(args)
    accounts: list[dict[str, Any]] = []
    for index in range(1, args.accounts + 1):
        plan = wanted_plans[(index - 1) % len(wanted_plans)]
        account_id = f"{args.account_prefix}-{index}"
        created = await api.ensure_account(account_id, email=f"{account_id}@example.com", plan=plan)
        extra = "n/a (plan without extra minutes)"
        terms = catalog[plan]
        if terms["monthly_fee_cents"] > 0 and terms["extra_minute_price_cents"] > 0:
            enabled = await api.enable_extra_minutes(account_id, limit)
            extra = limit_text(limit) if enabled else "off (no payment method endpoint)"
        accounts.append(
            {"account_id": account_id, "plan": plan, "created": created, "extra": extra}
        )
        advance(1)
    return accounts


async def simulate(args: argparse.Namespace, endpoint: Endpoint) -> dict[str, Any]:
    """Run the simulation ``args`` describe; the summary ``render_summary`` prints."""
    rng = random.Random(args.seed)
    shown = not args.no_progress
    connections = max(10, args.accounts * args.concurrency + 5)
    async with AsyncOvertimeClient(endpoint, connections) as api:
        with progress("accounts", args.accounts, enabled=shown) as advance:
            accounts = await _prepare_accounts(api, args, advance)

        run_id = uuid.uuid4().hex[:8]  # not from the seed: reruns must not reuse call ids
        lengths = plan_durations(rng, args.calls, args.duration, args.distribution)
        calls = [
            SimCall(accounts[n % len(accounts)]["account_id"], f"sim-{run_id}-{n + 1}", length)
            for n, length in enumerate(lengths)
        ]
        stats = SimStats(calls=len(calls), planned_seconds=sum(lengths))
        gates = {a["account_id"]: asyncio.Semaphore(args.concurrency) for a in accounts}

        with progress("calls", len(calls), enabled=shown) as advance:

            async def run_one(call: SimCall) -> None:
                async with gates[call.account_id]:
                    await sim_call(api, call, stats)
                advance(1)

            started = time.perf_counter()
            await asyncio.gather(*(run_one(c) for c in calls))
            wall = time.perf_counter() - started

        for account in accounts:
            try:
                account["state"] = await api.state(account["account_id"])
            except ApiError:
                account["state"] = None

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
