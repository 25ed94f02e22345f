"""Database engine and sessions (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, create_engine

from overtime import models  # noqa: F401  (registers the tables)

MIGRATIONS = Path(__file__).parent / "migrations"
# Any fixed number: the PostgreSQL advisory lock that serialises migrations.
MIGRATION_LOCK_ID = 7_433_101


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # The API and the worker are separate processes writing one file: WAL lets
            # readers go on while one writer commits; busy_timeout waits for the lock.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


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


def as_utc(value: datetime) -> datetime:
    """Datetimes read back from SQLite are naive UTC; make every one aware."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
