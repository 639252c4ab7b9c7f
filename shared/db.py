"""Database engines, sessions and migrations: SQLite (WAL, busy timeout) by default, PostgreSQL in production."""

from __future__ import annotations

import time
import zlib
from datetime import timezone
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator):
    """A timezone-aware datetime stored in UTC, read back aware on SQLite too (which keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime: say which time zone it is in")
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def make_engine(url: str) -> Engine:
    """An engine for a service's own database, tuned for its dialect. Its errors never quote the statement's
    parameters (they are people's details), in logs or in dead letters."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                                  hide_parameters=True)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below take over
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _sqlite_begin_immediate(conn):
            # Take the write lock up front, so two writers queue on busy_timeout instead of failing.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = sa.create_engine(url, pool_size=5, max_overflow=5, hide_parameters=True)
    _ping_when_idle(engine)
    return engine


PING_IDLE_SECONDS = 5.0  # a pooled connection unused this long is asked whether it still answers before it is used


def _ping_when_idle(engine: Engine) -> None:
    """Ask a pooled connection whether the database still answers before using it, when it has lain unused for
    PING_IDLE_SECONDS (one that fails is replaced, as `pool_pre_ping` would): a connection a busy process used
    a moment ago costs no round trip, and one left over from before an outage is found out before it is used.
    A connection cut within those seconds fails its statement and is replaced then (a worker tries the event
    again once the database answers)."""

    @sa.event.listens_for(engine, "connect")
    @sa.event.listens_for(engine, "checkin")
    def _note_last_use(dbapi_connection, record):
        record.info["used_at"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("used_at", float("-inf")) < PING_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError() from exc  # the pool drops it and checks out another


def make_sessions(engine: Engine) -> sessionmaker:
    """A session factory; use one session per request or per message, never across threads."""
    return sessionmaker(engine, expire_on_commit=False)


def is_postgres(engine_or_session) -> bool:
    """True when the database behind an engine or session is PostgreSQL."""
    bind = getattr(engine_or_session, "bind", None) or engine_or_session
    return bind.dialect.name == "postgresql"


def migrations_config(service: str, url: str) -> Config:
    """Alembic configuration for one service's migrations folder and database."""
    from shared.service import get

    folder = get(service).migrations
    config = Config()
    config.set_main_option("script_location", str(folder))
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    return config


def upgrade(service: str, url: str) -> None:
    """Bring a service's database to the newest migration."""
    command.upgrade(migrations_config(service, url), "head")


def run_migrations(target_metadata: sa.MetaData, service: str) -> None:
    """Body of every service's alembic env.py: migrate online, holding a PostgreSQL advisory lock."""
    url = context.config.attributes.get("url") or context.config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # Several instances may start at once; only one migrates at a time.
            connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": zlib.crc32(service.encode())})
            connection.commit()
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    engine.dispose()
