"""The Temporal worker: runs AccountWorkflow and its activities.

Run it with ``python -m worker`` (``make run`` does). It is stateless: start as many as
the load needs; they share the task queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.close import CloseActivities
from activities.invoicing import InvoicingActivities
from activities.ledger import LedgerActivities
from activities.notifications import NotificationActivities
from overtime.catalog import load_tax
from overtime.db import init_db
from overtime.observability import configure_logging, metrics_runtime
from overtime.payments import gateway_for
from overtime.production import require_production_ready
from overtime.sandbox import workflow_runner
from overtime.schedules import ensure_close_schedule
from overtime.settings import Settings, get_settings
from overtime.temporal import connect
from overtime.worker_heartbeat import Runnable, WorkerHeartbeatRunner
from workflows.account import AccountWorkflow
from workflows.close_report import MonthEndCloseWorkflow
from workflows.invoice import InvoiceWorkflow

WORKFLOWS: Sequence[type] = (AccountWorkflow, InvoiceWorkflow, MonthEndCloseWorkflow)
MAIN_ACTIVITY_SLOTS = 24
# Stripe activities in flight per worker. The request budget is kept by the limiter, so
# the slots only have to cover Stripe's latency: requests/s ≤ slots ÷ seconds per request,
# and a request to Stripe takes 0.2–0.5 s, so 100/s needs ~35 in flight (8, as before,
# capped a worker near 25/s). No more than the budget needs: every slot beyond it is an
# activity waiting in the limiter, and the waits add up to its start-to-close timeout
# (measured: 128 waiting at 20/s, 3.3 s per request at the median, 22 s at worst).
STRIPE_ACTIVITY_SLOTS = 32
STRIPE_SECONDS_PER_REQUEST = 0.35
# Requests per Stripe activity on average at month end: an invoice makes 7 (create 5 at a
# customer's first invoice, 4 after; pay 2) over two activities (bench_month_end.py).
STRIPE_MEAN_CALLS_PER_ACTIVITY = 3.5


def stripe_activity_slots(requests_per_second: float) -> int:
    """Stripe activities one worker runs at once: enough requests in flight for the
    budget at Stripe's latency, at least 4, at most ``STRIPE_ACTIVITY_SLOTS``."""
    needed = math.ceil(requests_per_second * STRIPE_SECONDS_PER_REQUEST)
    return max(4, min(STRIPE_ACTIVITY_SLOTS, needed))


def build_workers(
    client: Client, settings: Settings, executor: ThreadPoolExecutor
) -> list[Runnable]:
    """The main worker, the Stripe worker whose queue is rate-limited, and the heartbeat
    that tells ``/healthz`` within seconds when this process stops (last: ``python -m
    worker`` stops it first, so a graceful stop is recorded before the workers drain).

    Activities are sync and run on ``executor``. Stripe's request budget is kept per
    request by the limiter every gateway shares through the database
    (overtime/stripe_rate.py), however many workers and API processes run.
    """
    database_url = settings.resolved_database_url()
    init_db(database_url)
    ledger = LedgerActivities(database_url)
    notifications = NotificationActivities(settings)
    gateway = gateway_for(settings, "background")  # the API's customers go first
    invoicing = InvoicingActivities(database_url, lambda: gateway, load_tax(settings.plans_file))
    close = CloseActivities(settings, gateway)
    main = Worker(
        client,
        task_queue=settings.task_queue,
        workflows=list(WORKFLOWS),
        activities=[
            ledger.record_usage,
            ledger.record_usage_now,
            ledger.find_recorded_call,
            ledger.find_recorded_calls,
            ledger.settled_call_ids,
            ledger.record_settings_change,
            ledger.close_period,
            notifications.send_notice,
            notifications.send_service_event,
            invoicing.record_next_attempt,  # database only: not on the Stripe queue
            close.unclosed_accounts,
            close.build_close_report,
            close.send_close_report,
        ],
        activity_executor=executor,
        max_concurrent_activities=MAIN_ACTIVITY_SLOTS,
        # The sandbox with our workflow package passed through: a cached account holds
        # ~42 KiB of Python objects instead of ~112 KiB, and a new run (cache miss,
        # eviction replay, continue-as-new) costs ~1 ms of CPU instead of ~20 ms; the
        # determinism guard it moves to the tests is explained in overtime/sandbox.py.
        workflow_runner=workflow_runner(),
        max_cached_workflows=settings.worker_max_cached_workflows,
        # A task waits this long on a dead worker's sticky queue before another worker
        # takes it (10 s by default): telephony answers come within a second, so an
        # account whose worker was killed should be served again after seconds.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=3),
    )
    stripe = Worker(
        client,
        task_queue=settings.stripe_task_queue,
        activities=[
            invoicing.create_invoice,
            invoicing.pay_invoice,
            invoicing.refresh_invoice,
        ],
        activity_executor=executor,
        max_concurrent_activities=stripe_activity_slots(settings.stripe_requests_per_second),
        # Activities start at about the rate the budget sustains (an activity makes 1 to
        # 5 requests, 3.5 on average at month end), so a month-end backlog waits in
        # Temporal's queue, not in the limiter holding a slot. The budget itself is kept
        # per request by the gateway's limiter, whatever an activity makes.
        max_task_queue_activities_per_second=settings.stripe_requests_per_second
        / STRIPE_MEAN_CALLS_PER_ACTIVITY,
    )
    heartbeat = WorkerHeartbeatRunner(
        client, settings, [settings.task_queue, settings.stripe_task_queue], [main, stripe]
    )
    return [main, stripe, heartbeat]


async def run(settings: Settings) -> None:
    """Polls until SIGINT/SIGTERM (then returns) or a Temporal worker's fatal error (then
    raises it). The SDK's ``async with Worker`` cancels this task when the worker's
    ``run()`` fails and re-raises the failure on exit, after the heartbeat said goodbye
    and the other workers drained: a worker dead of a fatal error never leaves the process
    sitting on ``stop.wait()``."""
    runtime = (
        metrics_runtime(settings.worker_metrics_port, settings.worker_metrics_host)
        if settings.worker_metrics_port
        else None
    )
    client = await connect(settings, runtime)  # TLS / API key / payload encryption per settings
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await ensure_close_schedule(client, settings)
    # A thread for every slot: Stripe activities waiting for their window never delay
    # the ledger's.
    threads = MAIN_ACTIVITY_SLOTS + STRIPE_ACTIVITY_SLOTS
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="activity") as executor:
        workers = build_workers(client, settings, executor)
        async with contextlib.AsyncExitStack() as stack:
            for worker in workers:
                await stack.enter_async_context(worker)
            logging.getLogger("overtime.worker").info(
                "worker polling",
                extra={
                    "task_queues": [settings.task_queue, settings.stripe_task_queue],
                    "temporal": settings.temporal_address,
                    "metrics": f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
                    if settings.worker_metrics_port
                    else None,
                },
            )
            await stop.wait()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    # Before connecting: in production a dev secret or a missing one exits non-zero here.
    require_production_ready(settings)
    try:
        asyncio.run(run(settings))
    except Exception:
        # Non-zero, so the supervisor (compose's restart policy, systemd, Kubernetes)
        # starts a fresh process: a worker without its Temporal workers serves nothing.
        logging.getLogger("overtime.worker").exception("worker stopped by a fatal error")
        sys.exit(1)


if __name__ == "__main__":
    main()
