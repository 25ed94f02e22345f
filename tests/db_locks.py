"""A database another connection holds locked: what a hung database looks like to a reader
(PostgreSQL) or a writer (SQLite), for the health and heartbeat tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import make_url

from overtime.db import engine_for


@contextmanager
def table_locked(url: str, table: str, *, writes_only: bool = False) -> Iterator[None]:
    """``table`` locked against every other connection while the block runs.

    SQLite has no table locks: the whole file is locked for writing (``BEGIN EXCLUSIVE``);
    in WAL mode readers go on, every write waits. PostgreSQL: ``ACCESS EXCLUSIVE`` on the
    table, which readers wait for too (``writes_only``: ``EXCLUSIVE``, which they do not).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        holder = sqlite3.connect(parsed.database or "", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    with engine_for(url).connect() as connection:
        mode = "EXCLUSIVE" if writes_only else "ACCESS EXCLUSIVE"
        connection.execute(text(f"LOCK TABLE {table} IN {mode} MODE"))
        try:
            yield
        finally:
            connection.rollback()
