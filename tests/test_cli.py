"""The ``overtime`` admin CLI against the real stack (API, worker, Temporal).

``starter.cli.main`` runs in a thread: the API under test is served by this event loop,
so a blocking call here would deadlock it.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from starter import cli
from tests.conftest import Api, free_port


async def run_cli(api: Api, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    tokens = [
        "--api", api.base_url,
        "--admin-token", api.settings.admin_token,
        "--telephony-token", api.settings.telephony_token,
    ]  # fmt: skip
    capsys.readouterr()  # drop whatever earlier tests printed
    code = await asyncio.to_thread(cli.main, [*tokens, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def new_id(prefix: str = "cli") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_create_then_state_shows_the_account(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    account = new_id()
    code, out, err = await run_cli(
        api, capsys, "accounts", "create", account,
        "--email", f"{account}@example.com", "--plan", "starter", "--locale", "en",
    )  # fmt: skip
    assert (code, err) == (0, ""), err
    assert f"created account {account} on plan starter" in out

    code, out, err = await run_cli(api, capsys, "state", account)
    assert code == 0, err
    assert account in out
    assert "starter" in out
    assert "1 h 40 min included" in out  # 100 included minutes, spelled out

    # Enabling needs a payment method on file: the API's 409 comes through, with a hint.
    code, _, err = await run_cli(api, capsys, "extra-minutes", account, "--limit-eur", "12,34")
    assert code == cli.EXIT_API_ERROR
    assert err.startswith("error: payment_method_required: ")
    assert f"hint: attach one first: overtime payment-method {account} PM_ID" in err

    code, out, err = await run_cli(api, capsys, "payment-method", account, "pm_card_visa")
    assert code == 0, err
    assert out.startswith("attached card") and f"to {account}" in out

    code, out, err = await run_cli(api, capsys, "extra-minutes", account, "--limit-eur", "12,34")
    assert code == 0, err
    assert "limit 12.34 EUR" in out

    code, out, _ = await run_cli(api, capsys, "state", account, "--json")
    state = json.loads(out)
    assert state["plan"] == "starter"
    assert state["used_seconds"] == 0
    assert (state["enabled"], state["limit_cents"]) == (True, 1234)

    code, out, _ = await run_cli(api, capsys, "state", account)
    assert "on, limit 12.34 EUR" in out
    assert "payment method   on file" in out

    code, out, _ = await run_cli(api, capsys, "notifications", account, "--json")
    assert code == 0
    # Only the confirmations of what was just done, no limit notice.
    kinds = {notice["kind"] for notice in json.loads(out)}
    assert kinds <= {"payment_method_changed", "extra_minutes_enabled"}, kinds

    # A second create of the same id is the API's 409, passed through.
    code, _, err = await run_cli(
        api, capsys, "accounts", "create", account, "--email", "x@example.com", "--plan", "free"
    )
    assert code == cli.EXIT_API_ERROR
    assert err.startswith("error: account_exists: ")


async def test_bad_account_data_exits_non_zero_with_the_apis_reason(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI sends what it was given (an empty time zone is not "no time zone") and
    passes the API's refusal on: a non-zero exit and the reason on stderr."""
    account = new_id()
    for zone in ("", "localtime", "Mars/Olympus"):
        code, out, err = await run_cli(
            api, capsys, "accounts", "create", account,
            "--email", f"{account}@example.com", "--plan", "starter", "--timezone", zone,
        )  # fmt: skip
        assert code == cli.EXIT_API_ERROR, (zone, out)
        assert err.startswith("error: invalid_timezone: "), err
    code, _, err = await run_cli(
        api, capsys, "accounts", "create", account,
        "--email", f"{account}@example.com", "--plan", "starter",
    )  # fmt: skip
    assert (code, err) == (0, ""), err
    # The same id in another case is the same account; so is the same email.
    code, _, err = await run_cli(
        api, capsys, "accounts", "create", account.upper(),
        "--email", f"other-{account}@example.com", "--plan", "starter",
    )  # fmt: skip
    assert code == cli.EXIT_API_ERROR and err.startswith("error: account_exists: "), err
    code, _, err = await run_cli(
        api, capsys, "accounts", "create", new_id(),
        "--email", f"{account.upper()}@EXAMPLE.com", "--plan", "starter",
    )  # fmt: skip
    assert code == cli.EXIT_API_ERROR and err.startswith("error: email_taken: "), err


@pytest.mark.parametrize(
    ("text", "cents"),
    [
        ("50", 5000),
        ("50.00", 5000),
        ("49.9", 4990),
        ("0,01", 1),
        ("12,34", 1234),
        (" 20 EUR", 2000),
        ("7€", 700),
        ("999999999.99", 99999999999),
    ],
)
def test_parse_eur_is_exact(text: str, cents: int) -> None:
    assert cli.parse_eur(text) == cents


def test_formatting() -> None:
    assert cli.fmt_eur(2000) == "20.00 EUR"
    assert cli.fmt_eur(-5) == "-0.05 EUR"
    assert cli.fmt_duration(0) == "0 s"
    assert cli.fmt_duration(750) == "12 min 30 s"
    assert cli.fmt_duration(7200) == "2 h"
    assert cli.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert cli.percentile([float(n) for n in range(1, 101)], 99) == 99.0
    assert cli.percentile([], 99) is None


async def test_plans(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run_cli(api, capsys, "plans")
    assert code == 0
    assert "starter   29.00 EUR    100 min   0.39 EUR/min" in out
    code, out, _ = await run_cli(api, capsys, "plans", "--json")
    assert {p["plan"] for p in json.loads(out)} == {"free", "starter", "business"}


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (["--limit-eur", "12.345"], "at most two decimals"),
        (["--limit-eur", "abc"], "is not an amount in EUR"),
        (["--limit-eur", "0.00"], "more than 0.00 EUR"),
        (["--limit-eur", "1e3"], "is not an amount in EUR"),
        (["--limit-cents", "-5"], "must be at least 1"),
        (["--limit-minutes", "ten"], "is not a whole number"),
        (["--limit-cents", "5", "--limit-minutes", "5"], "not allowed with argument"),
        ([], "one of the arguments"),
    ],
)
async def test_bad_limit_is_refused_before_the_api(
    api: Api, capsys: pytest.CaptureFixture[str], limit: list[str], message: str
) -> None:
    code, out, err = await run_cli(api, capsys, "extra-minutes", "anyone", *limit)
    assert code == cli.EXIT_USAGE
    assert message in err
    assert out == ""


async def test_api_errors_are_printed_with_code_and_detail(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    account = await api.create_account("starter")
    # Above the configured maximum: the API's 422, not ours.
    too_much = str(api.settings.max_limit_cents + 1)
    code, _, err = await run_cli(api, capsys, "extra-minutes", account, "--limit-cents", too_much)
    assert code == cli.EXIT_API_ERROR
    assert err.startswith("error: invalid_limit: limit_cents must be between 1 and ")

    free = await api.create_account("free")
    code, _, err = await run_cli(api, capsys, "extra-minutes", free, "--limit-minutes", "10")
    assert code == cli.EXIT_API_ERROR
    assert err.startswith("error: not_eligible: ")

    code, _, err = await run_cli(api, capsys, "state", "no-such-account")
    assert (code, err.strip()) == (1, "error: unknown_account: no account 'no-such-account'")

    code, _, err = await run_cli(api, capsys, "--admin-token", "wrong", "state", account)
    assert code == cli.EXIT_API_ERROR
    assert err.startswith("error: forbidden: ")


async def test_unreachable_api_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code = await asyncio.to_thread(cli.main, ["--api", url, "plans"])
    assert code == cli.EXIT_UNREACHABLE
    assert f"error: cannot reach the API at {url}" in capsys.readouterr().err

    assert await asyncio.to_thread(cli.main, ["--help"]) == 0
    assert "exit codes:" in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["--api", "localhost:1", "plans"]) == cli.EXIT_USAGE


async def test_simulate_bills_exactly_what_the_accounts_used(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = new_id("sim")
    # A free account runs out of its 30 included minutes (calls are refused or cut short);
    # the starter account has a 1.00 EUR extra-minutes limit on top of 100 minutes.
    code, out, err = await run_cli(
        api, capsys, "simulate", "--accounts", "2", "--calls", "20", "--plans", "free,starter",
        "--account-prefix", prefix, "--concurrency", "3", "--duration", "400",
        "--limit-eur", "1.00", "--seed", "7", "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["errors"] == 0, summary["error_kinds"]
    assert summary["calls"] == 20
    assert summary["allowed"] + summary["refused"] == 20
    assert summary["usage_reports"] == summary["allowed"]
    assert summary["refused"] + summary["cut_short"] > 0  # the free account ran out
    assert set(summary["reasons"]) <= {"included_minutes_exhausted", "limit_reached"}
    assert summary["authorize_p50_ms"] <= summary["authorize_p99_ms"]

    accounts = [f"{prefix}-1", f"{prefix}-2"]
    assert [a["account_id"] for a in summary["accounts"]] == accounts
    states = [await api.state(account) for account in accounts]
    assert summary["billed_seconds"] == sum(s["used_seconds"] for s in states)
    assert states[0]["plan"] == "free"
    assert states[0]["used_seconds"] <= states[0]["included_seconds"]
    assert states[1]["plan"] == "starter"
    assert states[1]["extra_cost_cents"] <= 100

    # The human summary of a second run on the same (reused) accounts.
    code, out, err = await run_cli(
        api, capsys, "simulate", "--accounts", "2", "--calls", "4", "--plans", "free,starter",
        "--account-prefix", prefix, "--duration", "60", "--distribution", "fixed",
    )  # fmt: skip
    assert code == 0, err
    assert "simulated 4 calls on 2 accounts" in out
    assert "errors         0" in out
    assert "reused" in out


async def test_simulate_unknown_plan(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = await run_cli(api, capsys, "simulate", "--plans", "gold", "--calls", "1")
    assert code == cli.EXIT_USAGE
    assert "unknown plan(s) gold" in err


def test_default_api_url_follows_the_servers_own_variables() -> None:
    assert cli.default_api_url({}) == "http://127.0.0.1:8000"
    assert cli.default_api_url({"OVERTIME_HTTP_PORT": "8100"}) == "http://127.0.0.1:8100"
    # The server bound to every interface is reached on loopback from this machine.
    bound_everywhere = {"OVERTIME_HTTP_HOST": "0.0.0.0", "OVERTIME_HTTP_PORT": "8100"}
    assert cli.default_api_url(bound_everywhere) == "http://127.0.0.1:8100"
    explicit = {"OVERTIME_API_URL": "https://api.example", "OVERTIME_HTTP_PORT": "8100"}
    assert cli.default_api_url(explicit) == "https://api.example"


async def test_port_and_tokens_come_from_the_environment(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No flags at all: OVERTIME_HTTP_PORT finds the API, the token variables open it (the
    suite's tokens are not the dev defaults, so a default could not pass)."""
    monkeypatch.delenv("OVERTIME_API_URL", raising=False)
    monkeypatch.delenv("OVERTIME_HTTP_HOST", raising=False)
    monkeypatch.setenv("OVERTIME_HTTP_PORT", str(httpx.URL(api.base_url).port))
    monkeypatch.setenv("OVERTIME_ADMIN_TOKEN", api.settings.admin_token)
    monkeypatch.setenv("OVERTIME_TELEPHONY_TOKEN", api.settings.telephony_token)
    prefix = new_id("env")
    capsys.readouterr()
    argv = ["simulate", "--accounts", "1", "--calls", "2", "--plans", "starter",
            "--account-prefix", prefix, "--duration", "30", "--json"]  # fmt: skip
    assert await asyncio.to_thread(cli.main, argv) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert (summary["errors"], summary["allowed"]) == (0, 2)  # the telephony token worked
    assert await asyncio.to_thread(cli.main, ["state", f"{prefix}-1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["used_seconds"] > 0  # the admin token too

    monkeypatch.setenv("OVERTIME_ADMIN_TOKEN", "not-the-token")
    assert await asyncio.to_thread(cli.main, ["state", f"{prefix}-1"]) == cli.EXIT_API_ERROR
