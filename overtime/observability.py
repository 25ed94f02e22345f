"""Metrics and structured logs.

Metrics go through the Temporal SDK's own meter, so one Prometheus exporter per process
serves the SDK's runtime metrics and ours together: the worker on
``OVERTIME_WORKER_METRICS_HOST``:``OVERTIME_WORKER_METRICS_PORT`` (``/metrics``;
loopback by default, ``0.0.0.0`` in a container so a scraper on its network reaches
it), the API at its own ``GET /metrics``.
Inside activities the meter is ``activity.metric_meter()``, so the figures belong to the
worker that did the work.

Logs are JSON lines (``OVERTIME_LOG_FORMAT=json``, the default, for production's log
collectors) carrying ``account_id``, ``call_id`` and Temporal's workflow and activity ids
wherever they are known; ``OVERTIME_LOG_FORMAT=text`` (``make run`` sets it) prints one
readable line per record for a person at a terminal.
"""

from __future__ import annotations

import logging
import socket
import sys

from pythonjsonlogger.json import JsonFormatter
from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

AUTHORIZATIONS = "overtime_authorizations"
SECONDS_BILLED = "overtime_seconds_billed"
NOTICES_SENT = "overtime_notices_sent"
INVOICES = "overtime_invoices"
WEBHOOK_FAILURES = "overtime_webhook_failures"
# Deliveries given up for good (recorded as failed, not retried any more).
NOTICES_FAILED = "overtime_notices_failed"
SERVICE_EVENTS_FAILED = "overtime_service_events_failed"
# Telephony requests answered 503 overloaded by admission control (starter/admission.py).
REQUESTS_SHED = "overtime_requests_shed"

_DESCRIPTIONS = {
    AUTHORIZATIONS: "Call authorisations answered, by result and reason",
    SECONDS_BILLED: "Seconds billed, by kind (included or extra)",
    NOTICES_SENT: "Customer emails sent, by kind",
    INVOICES: "Invoice state changes seen, by status",
    WEBHOOK_FAILURES: "Webhook deliveries or receipts that failed, by direction",
    NOTICES_FAILED: "Customer emails given up for good, by kind and reason",
    SERVICE_EVENTS_FAILED: "Telephony webhook events given up for good, by event and reason",
    REQUESTS_SHED: "Telephony requests shed (503 overloaded), by bound (process, account)",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]  # (host, port) for AF_INET
        return port


def metrics_runtime(port: int, host: str = "127.0.0.1") -> Runtime:
    """A Temporal runtime that serves Prometheus metrics on ``host:port``."""
    return Runtime(
        telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}"))
    )


def count(meter: MetricMeter, name: str, value: int = 1, **attributes: str) -> None:
    if value <= 0:
        return
    meter.create_counter(name, _DESCRIPTIONS.get(name), "1").add(value, attributes)


def count_in_activity(name: str, value: int = 1, **attributes: str) -> None:
    """Count from inside an activity, on the worker's meter (a no-op outside one)."""
    if activity.in_activity():
        count(activity.metric_meter(), name, value, **attributes)


# The attributes every LogRecord has; anything else was passed as ``extra=``.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value …``: the JSON lines' extra fields
    (``account_id``, ``event``, …) stay visible in text mode too."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)  # before a traceback, which format() appends
        extras = " ".join(
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _RECORD_FIELDS and not key.startswith("_")
        )
        return f"{text} {extras}" if extras else text


def configure_logging(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
