"""What the commands print: tables of the API's answers (amounts and lengths through
``overtime.formatting``, in the exact forms operators read and paste back)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from overtime import formatting

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


def limit_text(settings: Mapping[str, Any]) -> str:
    if settings.get("limit_cents") is not None:
        return fmt_eur(settings["limit_cents"])
    if settings.get("limit_minutes") is not None:
        return f"{settings['limit_minutes']} min"
    return "-"


def render_plans(plans: Sequence[Mapping[str, Any]]) -> str:
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
    return table(rows, ["plan", "monthly fee", "included", "extra minute"])


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


def render_state(account_id: str, state: Mapping[str, Any]) -> str:
    used, included = state["used_seconds"], state["included_seconds"]
    extra_line = "off"
    if state["enabled"]:
        extra_line = (
            f"on, limit {limit_text(state)} "
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


def render_notifications(rows: Sequence[Mapping[str, Any]]) -> str:
    return table(
        [(n["sent_at"], n["kind"], n["to"], n["period_start"]) for n in rows],
        ["sent at", "kind", "to", "period start"],
    )


def render_close_report(report: Mapping[str, Any]) -> str:
    lines = [
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
    ]
    lines += [
        f"mismatch: {line['account_id']}: {line['mismatch']}"
        for line in report["lines"]
        if line["mismatch"]
    ]
    return "\n".join(lines)


def render_summary(summary: Mapping[str, Any], args: argparse.Namespace) -> str:
    """``simulate``'s summary: the run's counts, then one row per account."""

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
