"""Migration 0004 upgrades a database that already holds rows (SQLite; the PostgreSQL
pass checks the resulting schema in test_migrations and test_ledger_idempotency)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import text

from overtime.db import alembic_config, engine_for

T = "'2026-01-01T00:00:00+00:00'"


def test_upgrade_keeps_rows_and_marks_old_deliveries(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0003")
        connection.execute(
            text(
                "INSERT INTO webhook_delivery (event_id, account_id, event, status_code, "
                f"delivered_at) VALUES ('skipped', 'a', 'service.stopped', NULL, {T}), "
                f"('sent', 'a', 'service.stopped', 204, {T})"
            )
        )
        connection.execute(
            text(
                'INSERT INTO notification (account_id, kind, notice_key, "to", subject, '
                f"period_start, sent_at) VALUES ('a', 'k', 'key', 'a@example.com', 's', {T}, {T})"
            )
        )
        connection.execute(
            text(
                "INSERT INTO account (account_id, email, plan, locale, timezone, created_at, "
                f"extra_enabled) VALUES ('a', 'a@example.com', 'starter', 'de', 'UTC', {T}, 0)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO settings_change (account_id, actor, changed_at, old_enabled, "
                f"new_enabled) VALUES ('a', 'admin', {T}, 0, 1)"
            )
        )
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
        deliveries = connection.execute(
            text("SELECT event_id, status FROM webhook_delivery ORDER BY event_id")
        ).all()
        notices = connection.execute(text("SELECT status, error FROM notification")).all()
        versions = connection.execute(text("SELECT settings_version FROM account")).all()
        changes = connection.execute(text("SELECT change_id FROM settings_change")).all()
    assert [tuple(row) for row in deliveries] == [("sent", "delivered"), ("skipped", "skipped")]
    assert [tuple(row) for row in notices] == [("sent", None)]
    assert [tuple(row) for row in versions] == [(0,)]
    assert [tuple(row) for row in changes] == [(None,)]
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0003")
        command.upgrade(alembic_config(connection), "head")
    engine.dispose()
