"""Which faults a message waits out on the broker for as long as it takes (transient), and which use up its tries
(anything else); and the waits between tries, read from CCS_RETRY_DELAYS."""

from __future__ import annotations

import sqlite3

import kombu.exceptions
import psycopg
import pytest
import sqlalchemy.exc

from shared.bus import Worker, is_transient
from shared.config import SettingsError, env_delays, load


def wrapped(cause: BaseException) -> Exception:
    """An error as a handler raises it: the driver's, wrapped by SQLAlchemy or the service."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("the handler failed") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize("error", [
    sqlalchemy.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused")),
    sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")),
    psycopg.errors.DeadlockDetected("deadlock detected"),
    psycopg.errors.SerializationFailure("could not serialize access"),
    sqlite3.OperationalError("database is locked"),
    kombu.exceptions.OperationalError("broker unreachable"),
    ConnectionResetError("reset by peer"),
    TimeoutError("timed out"),
    wrapped(psycopg.OperationalError("server closed the connection unexpectedly")),
], ids=lambda e: type(e).__name__)
def test_an_unreachable_database_or_broker_a_deadlock_or_busy_sqlite_is_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", [
    RuntimeError("a bug"), KeyError("volunteer_id"), ValueError("bad"),
    sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")),
    psycopg.errors.UndefinedColumn("column does not exist"),
], ids=lambda e: type(e).__name__)
def test_a_bug_or_a_broken_constraint_is_not_transient(error):
    assert not is_transient(error)


def test_the_waits_rise_and_the_last_repeats(tmp_path, monkeypatch):
    monkeypatch.setenv("CCS_VAR_DIR", str(tmp_path))
    settings = load("matching", {"CCS_RETRY_DELAYS": "1,5,30"})
    assert settings.retry_delays == (1, 5, 30)
    worker = Worker(None, settings, [], lambda event: None)
    assert [worker.delay(tries) for tries in (1, 2, 3, 4, 50)] == [1, 5, 30, 30, 30]
    assert load("matching", {}).retry_delays == (1, 5, 30, 120, 600)


@pytest.mark.parametrize("raw", ["soon", "5,1", "0,1", "1,,2", "100000"])
def test_retry_delays_that_are_not_rising_seconds_are_refused_naming_the_variable(raw):
    with pytest.raises(SettingsError, match="CCS_RETRY_DELAYS"):
        env_delays({"CCS_RETRY_DELAYS": raw}, "CCS_RETRY_DELAYS", (1,))
