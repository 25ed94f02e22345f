"""The Temporal Schedule that runs the month-end close after every month boundary."""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)

from overtime.settings import Settings
from workflows.close_report import MonthEndCloseWorkflow
from workflows.types import CLOSE_SCHEDULE_ID, CloseInput


def close_schedule(settings: Settings) -> Schedule:
    """02:00 on the 1st, in the finance time zone: the previous month is reported."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            MonthEndCloseWorkflow.run,
            CloseInput(
                period=None,
                timezone=settings.default_timezone,
                wait_seconds=settings.close_wait_seconds,
                poll_seconds=settings.close_poll_seconds,
            ),
            id="month-end-close",
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    day_of_month=[ScheduleRange(1)],
                    hour=[ScheduleRange(2)],
                    minute=[ScheduleRange(0)],
                    second=[ScheduleRange(0)],
                )
            ],
            time_zone_name=settings.default_timezone,
        ),
        # A close still waiting for stragglers is not started twice.
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def ensure_close_schedule(client: Client, settings: Settings) -> bool:
    """Create the schedule unless it exists; True when created now."""
    try:
        await client.create_schedule(CLOSE_SCHEDULE_ID, close_schedule(settings))
    except ScheduleAlreadyRunningError:
        return False
    return True
