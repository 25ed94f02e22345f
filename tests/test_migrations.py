"""The schema comes from Alembic migrations, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

from overtime.db import alembic_config, engine_for, init_db


def test_migrations_build_exactly_the_models_schema(database_url: str) -> None:
    """A model changed without a migration shows up here as a difference."""
    engine = init_db(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_constraints_live_in_the_schema(database_url: str) -> None:
    inspector = inspect(engine_for(database_url))
    uniques = {
        table: {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
        for table in ("usage_entry", "invoice", "closed_period", "notification")
    }
    assert ("account_id", "call_id") in uniques["usage_entry"]
    assert ("account_id", "period_start") in uniques["invoice"]
    assert ("account_id", "period_start") in uniques["closed_period"]
    checks = {c["name"] for c in inspector.get_check_constraints("usage_entry")}
    assert "ck_usage_non_negative" in checks


def test_upgrade_is_idempotent(database_url: str) -> None:
    init_db(database_url)
    with engine_for(database_url).connect() as connection:
        version = MigrationContext.configure(connection).get_current_revision()
    assert version is not None


def test_web_sessions_migration_goes_up_and_down(tmp_path: Path) -> None:
    """0005 adds the server-side session and sign-in code tables and removes them again."""
    engine = engine_for(f"sqlite:///{tmp_path / 'sessions.db'}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0005")
    tables = set(inspect(engine).get_table_names())
    assert {"web_session", "web_login_code"} <= tables
    indexes = {i["name"] for i in inspect(engine).get_indexes("web_session")}
    assert {"ix_web_session_account_id", "ix_web_session_expires_at"} <= indexes
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0004")
    assert not {"web_session", "web_login_code"} & set(inspect(engine).get_table_names())


def test_worker_heartbeat_migration_goes_up_and_down(tmp_path: Path) -> None:
    """0007 adds the worker heartbeat table (read by /healthz) and removes it again."""
    engine = engine_for(f"sqlite:///{tmp_path / 'heartbeat.db'}")
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0007")
    assert "worker_heartbeat" in inspect(engine).get_table_names()
    primary = inspect(engine).get_pk_constraint("worker_heartbeat")["constrained_columns"]
    assert primary == ["worker_id", "task_queue"]
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0006")
    assert "worker_heartbeat" not in inspect(engine).get_table_names()
