"""Which faults a message waits out on the broker for as long as it takes (transient), and which use up its tries
(anything else); and the waits between tries, read from CCS_RETRY_DELAYS."""

from __future__ import annotations

import sqlite3
import time

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


@pytest.mark.parametrize("error, passes", [
    (psycopg.errors.AdminShutdown("terminating connection"), True),
    (psycopg.errors.TooManyConnections("too many clients"), True),
    (psycopg.errors.LockNotAvailable("could not obtain lock"), True),
    (psycopg.errors.DiskFull("no space left"), False),
    (psycopg.errors.QueryCanceled("statement timeout"), False),
    (psycopg.errors.ProgramLimitExceeded("index row size exceeds"), False),
], ids=lambda e: type(e).__name__ if isinstance(e, Exception) else str(e))
def test_postgresqls_try_again_answers_pass_and_what_would_fail_every_time_does_not(error, passes):
    assert is_transient(sqlalchemy.exc.OperationalError("UPDATE", {}, error)) is passes


class Published(list):
    def publish(self, body, **kwargs):
        self.append((body, kwargs["routing_key"]))


def test_waiting_messages_come_back_when_due_and_a_dead_workers_claim_comes_back_too(tmp_path):
    """Drafts and claims (hidden files) are never read as messages; a claim older than a minute, left by a worker
    that died between claiming and publishing, is due again."""
    from shared.bus import FolderDelays

    delays = FolderDelays(tmp_path)
    delays.add({"n": 1}, "matching.intake.requests", 0, {})
    delays.add({"n": 2}, "notify.matching.offers", 3600, {})  # not due for an hour
    delays.add({"n": 3}, "intake.matching.outcomes", 0, {})
    (tmp_path / ".1_draft.json.part").write_text("{")  # being written: not a message yet
    [third] = [p for p in tmp_path.glob("[0-9]*.json") if '"n": 3' in p.read_text()]
    third.rename(tmp_path / f".claimed.{int((time.time() - 120) * 1000)}.{third.name}")

    published = Published()
    assert delays.release_due(published) == 2
    assert sorted(published, key=str) == [({"n": 1}, "matching.intake.requests"),
                                          ({"n": 3}, "intake.matching.outcomes")]
    assert delays.release_due(published) == 0
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".1_draft")] == [
        p.name for p in tmp_path.glob("[0-9]*.json")]  # only the one not yet due is left
    assert len(list(tmp_path.glob("[0-9]*.json"))) == 1
