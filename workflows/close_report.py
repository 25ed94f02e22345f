"""MonthEndCloseWorkflow: the automated month-end close and its report.

A Temporal Schedule (overtime/schedules.py) starts it after every month boundary; admins
can start it for any month (``POST /v1/reports/close/{period}``). It waits until every
account's period of that month has closed (polling, with a deadline, so one stuck account
cannot hold the report back forever), reconciles the ledger, the closed periods, our
invoices and Stripe's, stores the report, and emails it with a CSV to finance.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.close import CloseActivities
    from billing.rules import previous_month_label
    from workflows.types import CloseInput, CloseRequest, CloseSummary

RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


@workflow.defn
class MonthEndCloseWorkflow:
    @workflow.run
    async def run(self, input: CloseInput) -> CloseSummary:
        period = input.period or previous_month_label(workflow.now(), input.timezone)
        deadline = workflow.now() + timedelta(seconds=input.wait_seconds)
        while True:
            unclosed: list[str] = await workflow.execute_activity_method(
                CloseActivities.unclosed_accounts,
                CloseRequest(period, input.timezone),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=RETRY,
            )
            remaining = (deadline - workflow.now()).total_seconds()
            if not unclosed or remaining <= 0:
                break
            await workflow.sleep(min(input.poll_seconds, remaining))
        summary: CloseSummary = await workflow.execute_activity_method(
            CloseActivities.build_close_report,
            CloseRequest(period, input.timezone, unclosed),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RETRY,
        )
        await workflow.execute_activity_method(
            CloseActivities.send_close_report,
            CloseRequest(period, input.timezone),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RETRY,
        )
        return summary
