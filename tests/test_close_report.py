"""The automated month-end close: schedule, reconciliation, report, CSV and finance email."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from sqlmodel import select
from temporalio.client import Client

from billing.rules import month_label
from devstack.mail_catcher import MailCatcher
from overtime.db import session_scope
from overtime.models import UsageEntry
from overtime.schedules import ensure_close_schedule
from overtime.settings import Settings
from tests.conftest import SHORT_PERIOD_SECONDS, Api, eventually, start_api, stop_api
from tests.test_invoicing import account_with_extra_minutes, invoice_with_status
from workflows.types import CLOSE_SCHEDULE_ID


async def test_the_schedule_runs_the_close_monthly(
    temporal_client: Client, settings: Settings
) -> None:
    assert await ensure_close_schedule(temporal_client, settings) in (True, False)
    assert await ensure_close_schedule(temporal_client, settings) is False  # idempotent
    described = await temporal_client.get_schedule_handle(CLOSE_SCHEDULE_ID).describe()
    calendar = described.schedule.spec.calendars[0]
    assert [r.start for r in calendar.day_of_month] == [1]
    assert [r.start for r in calendar.hour] == [2]
    assert described.schedule.spec.time_zone_name == "Europe/Berlin"
    assert described.schedule.action.workflow == "MonthEndCloseWorkflow"  # type: ignore[attr-defined]


async def test_close_report_reconciles_and_reports_every_mismatch(
    short_api: Api, settings: Settings, temporal_client: Client, mail: MailCatcher
) -> None:
    api = short_api
    paid = await account_with_extra_minutes(api, "pm_card_visa", 120)
    declined = await account_with_extra_minutes(api, "pm_card_chargeCustomerFail", 60)
    tampered = await api.create_account()
    assert await api.call(tampered, "only-included", 100) == 100
    await invoice_with_status(api, paid, "paid")
    await invoice_with_status(api, declined, "payment_failed")

    # Someone edits the ledger behind the workflow's back: the close must notice.
    def tamper() -> bool:
        with session_scope(settings.resolved_database_url()) as session:
            row = session.exec(select(UsageEntry).where(UsageEntry.account_id == tampered)).first()
            if row is None:
                return False
            row.billed_included_seconds += 7
            session.add(row)
            session.commit()
            return True

    await eventually(tamper, timeout=SHORT_PERIOD_SECONDS * 3)

    # A calendar-month account whose month has not ended: reported as not closed.
    monthly_settings = settings.model_copy(update={"period_seconds": None})
    server, task, monthly_api = await start_api(monthly_settings, temporal_client)
    try:
        monthly = await monthly_api.create_account()
    finally:
        await stop_api(server, task, monthly_api)

    async def closed_period_of(account: str) -> bool:
        state = await api.state(account)
        return state["used_seconds"] == 0  # its first period has closed

    await eventually(lambda: closed_period_of(tampered), timeout=SHORT_PERIOD_SECONDS * 3)

    period = month_label(datetime.now(UTC), "Europe/Berlin")
    started = await api.admin.post(f"/v1/reports/close/{period}", params={"wait_seconds": 1})
    assert started.status_code == 202, started.text

    async def report() -> dict | None:
        response = await api.admin.get(f"/v1/reports/close/{period}")
        return response.json() if response.status_code == 200 else None

    found = await eventually(report, timeout=30)
    # Each account's first period: the one with the calls above. Short periods keep
    # closing while the test runs, and the later ones are empty.
    lines: dict[str, dict] = {}
    for line in sorted(found["lines"], key=lambda line: line["period_start"] or ""):
        lines.setdefault(line["account_id"], line)

    assert lines[paid]["invoice_status"] == "paid"
    assert (lines[paid]["extra_seconds"], lines[paid]["amount_cents"]) == (120, 78)
    assert lines[paid]["mismatch"] is None
    assert lines[declined]["invoice_status"] == "payment_failed"
    assert lines[declined]["mismatch"] is None
    assert "ledger 107/0 s in 1 calls, workflow 100/0 s in 1 calls" in lines[tampered]["mismatch"]
    assert lines[monthly]["mismatch"] == "period not closed by the report's deadline"

    # The totals are the sum of the lines; failures and payments are told apart.
    assert found["invoiced_cents"] == sum(line["amount_cents"] for line in found["lines"])
    assert found["paid_cents"] >= 78 and found["failed_cents"] >= 39
    assert found["mismatches"] == sum(1 for line in found["lines"] if line["mismatch"])

    exported = await api.admin.get(f"/v1/reports/close/{period}", params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["account_id"] for r in rows} >= {paid, declined, tampered, monthly}
    assert next(r for r in rows if r["account_id"] == paid)["amount_cents"] == "78"

    finance = await eventually(lambda: mail.to(settings.finance_email), timeout=15)
    assert f"Month-end close {period}" in finance[-1].subject
    attachment = next(finance[-1].message.iter_attachments())
    assert attachment.get_filename() == f"overtime-close-{period}.csv"
    assert paid in attachment.get_content()


async def test_report_input_is_checked(api: Api) -> None:
    assert (await api.admin.get("/v1/reports/close/2026-13")).status_code == 422
    assert (await api.admin.post("/v1/reports/close/last-month")).status_code == 422
    assert (await api.admin.get("/v1/reports/close/1999-01")).status_code == 422
    assert (await api.admin.get("/v1/reports/close/2031-01")).json()["error"] == "no_report"
    assert (await api.telephony.get("/v1/reports/close/2026-11")).status_code == 403
