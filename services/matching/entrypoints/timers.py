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
from typing import Callable

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from services.matching import service_layer
from shared import clock
from shared.config import Settings

log = logging.getLogger(__name__)
LOCK_KEY = 0x63637374  # "ccst": one advisory lock number for matching's timers
INTERVAL_SECONDS = 30.0


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
        """Let another process take the lock."""
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


def expire_offers(unit_of_work: Callable, settings) -> int:
    """Expire the offers unanswered as of now."""
    with unit_of_work() as uow:
        return service_layer.expire_offers(uow, clock.utcnow(), settings.policy)


def remind_expiring_checks(unit_of_work: Callable, settings) -> int:
    """Send the reminders of checks expiring soon, as of today."""
    with unit_of_work() as uow:
        return service_layer.remind_expiring_checks(uow, clock.today())


def run_jobs_once(unit_of_work: Callable, settings) -> None:
    """Run every job once, each in its own transaction."""
    expired, reminded = expire_offers(unit_of_work, settings), remind_expiring_checks(unit_of_work, settings)
    if expired or reminded:
        log.info("timers: %d offers expired, %d check reminders", expired, reminded)


def run_timers(engine: Engine, unit_of_work: Callable, settings, stop: threading.Event,
               interval: float = INTERVAL_SECONDS) -> None:
    """Wait for the timer lock, then run the jobs every `interval` seconds on APScheduler until `stop`."""
    lock = TimerLock(engine, settings)
    try:
        while not stop.is_set() and not lock.acquire():
            stop.wait(interval)
        if stop.is_set():
            return
        log.info("this process runs matching's timers")
        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.add_job(run_jobs_once, "interval", seconds=interval, args=[unit_of_work, settings],
                          id="matching-timers", max_instances=1, coalesce=True,
                          next_run_time=datetime.now(timezone.utc))  # APScheduler keeps the machine's time
        scheduler.start()
        stop.wait()
        scheduler.shutdown(wait=True)
    finally:
        lock.release()


def timers_loop(context) -> Callable[[threading.Event], None]:
    """The worker's loop that runs the timers, for a service context (its engine, unit of work and settings)."""
    return lambda stop: run_timers(context.engine, context.uow, context.settings, stop)
