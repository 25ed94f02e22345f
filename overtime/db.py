"""Database engine and sessions (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import fcntl
import hashlib
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Table, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Mapper
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, SQLModel, create_engine

from overtime import models  # noqa: F401  (registers the tables)

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number: the PostgreSQL advisory lock that serialises migrations.
MIGRATION_LOCK_ID = 7_433_101


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url, busy_seconds=30.0)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_engine(url: str, busy_seconds: float, **pool: Any) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": busy_seconds}, **pool
    )
    busy_ms = max(1, int(busy_seconds * 1000))

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # The API and the worker are separate processes writing one file: WAL lets
        # readers go on while one writer commits; busy_timeout waits for the lock.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def postgres_bounded_args(seconds: float) -> dict[str, Any]:
    """libpq options that bound every wait of a connection to about ``seconds``.

    ``statement_timeout`` and ``lock_timeout`` are enforced by the server, so they end a
    slow query or a lock wait but not a dead network: after a failover that black-holes
    established connections a client would sit in ``recv`` until the kernel gives up
    (``tcp_retries2``: ~15 minutes). TCP keepalives (probing an idle connection that waits
    for an answer) and ``TCP_USER_TIMEOUT`` (sent data left unacknowledged) make such a
    connection fail within a few seconds instead.
    """
    whole = max(1, math.ceil(seconds))
    ms = max(1, int(seconds * 1000))
    return {
        # libpq counts whole seconds (at least 2).
        "connect_timeout": max(2, whole),
        "options": f"-c statement_timeout={ms} -c lock_timeout={ms}",
        "keepalives": 1,
        "keepalives_idle": whole,
        "keepalives_interval": 1,
        "keepalives_count": 2,
        "tcp_user_timeout": (whole + 2) * 1000,
    }


def bounded_engine(url: str, seconds: float) -> Engine:
    """An engine of one connection (no overflow) whose every wait ends after a few
    seconds: connecting, a checkout, a statement, a lock, a dead network (PostgreSQL), the
    write lock (SQLite's busy timeout). For work that must answer in time whatever the
    shared pool (``engine_for``) is doing: the health probe, the worker heartbeat."""
    pool: dict[str, Any] = {
        "pool_size": 1,
        "max_overflow": 0,
        "pool_timeout": seconds,
        "pool_pre_ping": True,
        "pool_recycle": 300,
    }
    if url.startswith("sqlite"):
        return _sqlite_engine(url, busy_seconds=seconds, **pool)
    return create_engine(url, connect_args=postgres_bounded_args(seconds), **pool)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def init_db(url: str) -> Engine:
    """Bring the schema to the newest migration (Alembic), once per process and URL.

    The API and the worker start together and both call this, so the upgrade runs under
    a lock: a PostgreSQL advisory lock, or a file lock for SQLite.
    """
    engine = engine_for(url)
    if url in _migrated:
        return engine
    with _migration_lock(engine, url), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        command.upgrade(alembic_config(connection), "head")
    _migrated.add(url)
    return engine


_migrated: set[str] = set()


@contextmanager
def _migration_lock(engine: Engine, url: str) -> Iterator[None]:
    if engine.dialect.name != "sqlite":
        yield  # PostgreSQL: the advisory lock inside the transaction does it
        return
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    with _file_lock(f"overtime-migrate-{digest}.lock"):
        yield


@contextmanager
def _file_lock(name: str) -> Iterator[None]:
    """An exclusive lock on a file in the temp directory; it ends with the process."""
    with open(Path(tempfile.gettempdir()) / name, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# SQLite: one lock file per stripe of names (a bounded set of files); two names in one
# stripe just wait for each other briefly.
LOCK_STRIPES = 64


@contextmanager
def serialised(url: str, name: str) -> Iterator[None]:
    """Run the block while no other thread or process runs one for the same ``name``.

    For work that must not run twice at once (one email, however many executions of its
    activity) and must never stay locked by a worker that died: a PostgreSQL session
    advisory lock ends with its connection; for SQLite, whose writers share one machine,
    a file lock ends with its process.
    """
    digest = hashlib.sha256(f"{url}\0{name}".encode()).digest()
    engine = engine_for(url)
    if engine.dialect.name == "postgresql":
        key = int.from_bytes(digest[:8], "big", signed=True)
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            connection.commit()
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                connection.commit()
        return
    stripe = int.from_bytes(digest[:4], "big") % LOCK_STRIPES
    url_digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    with _file_lock(f"overtime-lock-{url_digest}-{stripe:02d}.lock"):
        yield


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    with Session(engine_for(url), expire_on_commit=False) as session:
        yield session


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model, for Core statements (bulk inserts, upserts).

    SQLAlchemy sets ``Model.__table__`` when the class is created, but SQLModel's types do
    not declare it; the mapper's ``local_table`` is the same object, typed.
    """
    mapper: Mapper[Any] = inspect(model)
    table = mapper.local_table
    if not isinstance(table, Table):  # a model mapped onto a join or a select
        raise TypeError(f"{model.__name__} is not mapped to one table")
    return table


def as_utc(value: datetime) -> datetime:
    """Datetimes read back from SQLite are naive UTC; make every one aware."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
