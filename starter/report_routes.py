"""Month-end close reports: start one, read it as JSON or CSV (admin only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from billing.rules import month_window
from overtime.close_report import csv_filename, report_csv
from overtime.db import session_scope
from overtime.models import CloseReport, CloseReportLine
from starter.auth import admin_only
from starter.errors import ApiError
from workflows.close_report import MonthEndCloseWorkflow
from workflows.types import CloseInput, close_workflow_id

router = APIRouter(dependencies=[admin_only])


def _checked(period: str, timezone: str) -> str:
    try:
        month_window(period, timezone)
    except ValueError as err:
        raise ApiError(422, "invalid_period", str(err)) from err
    return period


@router.post("/v1/reports/close/{period}", status_code=202)
async def start_close(
    period: str,
    request: Request,
    wait_seconds: int | None = Query(default=None, ge=0, le=7 * 86_400),
) -> dict[str, str]:
    """Run the month-end close for ``period`` now (the schedule runs it monthly)."""
    settings = request.app.state.settings
    _checked(period, settings.default_timezone)
    handle = await request.app.state.temporal.start_workflow(
        MonthEndCloseWorkflow.run,
        CloseInput(
            period=period,
            timezone=settings.default_timezone,
            wait_seconds=settings.close_wait_seconds if wait_seconds is None else wait_seconds,
            poll_seconds=settings.close_poll_seconds,
        ),
        id=close_workflow_id(period),
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    return {"period": period, "workflow_id": handle.id}


@router.get("/v1/reports/close/{period}", response_model=None)
async def get_close(
    period: str, request: Request, format: str = Query(default="json", pattern="^(json|csv)$")
) -> dict[str, Any] | PlainTextResponse:
    settings = request.app.state.settings
    _checked(period, settings.default_timezone)

    def load() -> tuple[CloseReport | None, list[CloseReportLine], str]:
        with session_scope(settings.resolved_database_url()) as session:
            report = session.get(CloseReport, period)
            lines = list(
                session.exec(
                    select(CloseReportLine)
                    .where(CloseReportLine.period == period)
                    .order_by(col(CloseReportLine.account_id), col(CloseReportLine.id))
                )
            )
            return report, lines, report_csv(session, period) if format == "csv" else ""

    report, lines, csv_text = await run_in_threadpool(load)
    if report is None:
        raise ApiError(404, "no_report", f"no close report for {period} yet")
    if format == "csv":
        return PlainTextResponse(
            csv_text,
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{csv_filename(period)}"'},
        )
    return {
        **report.model_dump(mode="json"),
        "lines": [line.model_dump(mode="json", exclude={"id", "period"}) for line in lines],
    }
