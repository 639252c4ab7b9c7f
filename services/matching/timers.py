"""Matching's timed jobs on APScheduler, run by exactly one process per deployment.

Whichever matching worker holds the timer lock runs them: a PostgreSQL advisory lock held on its own
connection, or a file lock beside the SQLite database. The others keep trying, so if the holder dies another
takes over. Every job checks state before it acts, so running one twice is harmless.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from datetime import datetime, timezone

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from services.matching import handlers
from shared import clock
from shared.config import Settings

log = logging.getLogger(__name__)
LOCK_KEY = 0x63637374  # "ccst": one advisory lock number for matching's timers


class TimerLock:
    """Held by at most one process at a time, until it exits."""

    def __init__(self, engine: Engine, settings: Settings):
        self.engine, self.settings = engine, settings
        self.connection = None
        self.handle = None

    def acquire(self) -> bool:
        """Try once, without waiting; True if this process now holds the lock."""
        if self.engine.dialect.name == "postgresql":
            if self.connection is None:
                self.connection = self.engine.connect()
            held = self.connection.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY})
            self.connection.commit()
            return bool(held)
        self.handle = self.handle or open(self.settings.var_dir / "matching-timers.lock", "a")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def release(self) -> None:
        if self.connection is not None:
            try:
                self.connection.execute(sa.text("SELECT pg_advisory_unlock_all()"))
                self.connection.commit()
            finally:
                self.connection.close()  # back to the pool, holding nothing
                self.connection = None
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def run_jobs_once(sessions: sessionmaker) -> None:
    """Expire unanswered offers and send check reminders, as of now."""
    with sessions.begin() as session:
        expired = handlers.expire_offers(session, clock.utcnow())
    with sessions.begin() as session:
        reminded = handlers.remind_expiring_checks(session, clock.today())
    if expired or reminded:
        log.info("timers: %d offers expired, %d check reminders", expired, reminded)


def run_timers(engine: Engine, sessions: sessionmaker, settings: Settings, stop: threading.Event,
               interval: float = 30.0) -> None:
    """Wait for the timer lock, then run the jobs every `interval` seconds on APScheduler until `stop`."""
    lock = TimerLock(engine, settings)
    try:
        while not stop.is_set() and not lock.acquire():
            stop.wait(interval)
        if stop.is_set():
            return
        log.info("this process runs matching's timers")
        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.add_job(run_jobs_once, "interval", seconds=interval, args=[sessions], id="matching-timers",
                          max_instances=1, coalesce=True,
                          next_run_time=datetime.now(timezone.utc))  # APScheduler keeps the machine's time
        scheduler.start()
        stop.wait()
        scheduler.shutdown(wait=True)
    finally:
        lock.release()
