"""Structured logs: JSON lines that carry the ids an operator searches by."""

from __future__ import annotations

import io
import json
import logging

import pytest

from overtime.observability import configure_logging

# Metrics and logs: no database; the PostgreSQL pass would repeat it unchanged.
pytestmark = pytest.mark.sqlite_only


def test_json_logs_carry_account_and_call_ids() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("json", "INFO")
        stream = io.StringIO()
        root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
        logging.getLogger("overtime.test").info(
            "call refused",
            extra={"account_id": "acct-1", "call_id": "c-9", "reason": "limit_reached"},
        )
        line = json.loads(stream.getvalue().strip().splitlines()[-1])
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    assert line["message"] == "call refused"
    assert line["level"] == "INFO" and line["logger"] == "overtime.test"
    assert (line["account_id"], line["call_id"], line["reason"]) == (
        "acct-1",
        "c-9",
        "limit_reached",
    )
    assert "time" in line
