"""Engines and sessions; `connect` brings the schema to the newest migration first."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def connect(url: str, migrate_schema: bool = True) -> Engine:
    """An engine for `url` (sqlite:///… or postgresql+psycopg://…), its schema migrated to head."""
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if migrate_schema:
        migrate(engine)
    return engine


def _sqlite_pragmas(connection, _record) -> None:
    # WAL: the API reads while a job runner writes; foreign keys are off by default in SQLite.
    # Transactions are begun by us (below), not by the driver.
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


READ_ONLY = "tunery_read_only"  # an execution option: this connection's transactions only read


def _sqlite_begin_immediate(connection) -> None:
    # Take the write lock at BEGIN: a deferred transaction that reads, then writes after
    # another thread's commit fails at once with "database is locked" instead of waiting.
    # Read-only ones (the API's GETs) begin deferred: in WAL mode they wait for no one.
    read_only = connection.get_execution_options().get(READ_ONLY)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def migrate(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations shipped in this package up to `revision`."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # a server and its workers may start together
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7263001)")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def read_only_factory(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions for requests that only read: on SQLite they take no write lock."""
    engine = sessions.kw["bind"]
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
