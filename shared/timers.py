"""Timed jobs on APScheduler, run by one process per deployment at a time: the service's timer leader.

Whichever worker of a service holds its timer lock leads: a PostgreSQL advisory lock held on a connection of its
own, or a file lock beside the SQLite database. The others keep trying, so if the leader dies another takes over.

A leader knows it leads: before each run it checks it still holds the lock (on PostgreSQL, that its own backend
holds the advisory lock in pg_locks; a broken connection, as after a PostgreSQL restart or a terminated backend,
means the lock went with it), and when it has lost it, it stops leading and competes again with the others. A
leader can still lose its lock during a run, while another takes over: so every job claims the rows it works on
(`FOR UPDATE SKIP LOCKED`) and two runs at once still do each thing once. Matching's timers (offers expiring,
check reminders) and intake's and notify's nightly retention run this way, each service under a lock of its own.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from datetime import datetime, timezone
from typing import Callable

import sqlalchemy as sa
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from shared.config import Settings

log = logging.getLogger(__name__)
HELD = sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
               " AND classid::text::bigint = :high AND objid::text::bigint = :low AND objsubid = 1")


class TimerLock:
    """A service's timer lock (`name`: its lock file's, `key`: its PostgreSQL advisory lock's number). Held by at
    most one process at a time, until it releases it, exits, or (PostgreSQL) its connection ends.

    `held` says whether this process believes it holds the lock; `still_held()` checks, and forgets the lock when
    it went; `lost` counts the times it found it had gone. `backend_pid` is the lock connection's server process
    (PostgreSQL)."""

    def __init__(self, engine: Engine, settings: Settings, name: str, key: int):
        self.engine, self.settings, self.name, self.key = engine, settings, name, key
        self.connection = None
        self.handle = None
        self.held = False
        self.lost = 0
        self.backend_pid: int | None = None

    @property
    def path(self):
        return self.settings.var_dir / f"{self.name}-timers.lock"

    def acquire(self) -> bool:
        """Try once, without waiting; True if this process now holds the lock. A database it cannot reach now is
        a lock it does not hold (it tries again later)."""
        if self.held:
            return True
        if self.engine.dialect.name == "postgresql":
            try:
                if self.connection is None:
                    self.connection = self.engine.connect()
                    self.backend_pid = self.connection.scalar(sa.text("SELECT pg_backend_pid()"))
                got = bool(self.connection.scalar(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}))
                self.connection.commit()
                self.held = got
            except sa.exc.SQLAlchemyError as error:
                log.warning("timer lock: cannot reach the database (%s)", _first_line(error))
                self._drop_connection()
            return self.held
        handle = None
        try:  # the file at the lock's path now (opened again each time, in case it was replaced)
            handle = open(self.path, "a")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.handle, handle = handle, None
            self.held = self._file_is_the_lock()
        except OSError:  # held by another process (or its folder is gone for now)
            pass
        finally:
            if handle is not None:
                handle.close()
        if not self.held:
            self.release()
        return self.held

    def _file_is_the_lock(self) -> bool:
        """The file this process locked is still the one at the lock's path (not removed or replaced)."""
        try:
            return os.fstat(self.handle.fileno()).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def still_held(self) -> bool:
        """Whether this process still holds the lock it took, checked now: on PostgreSQL its backend must hold the
        advisory lock (a connection that fails the check is a lock lost with it); on SQLite the locked file must
        still be the one at the lock's path. When it went, forget it (the caller competes again)."""
        if not self.held:
            return False
        if self.engine.dialect.name == "postgresql":
            try:
                holds = bool(self.connection.scalar(HELD, {"high": self.key >> 32, "low": self.key & 0xFFFFFFFF}))
                self.connection.commit()
            except sa.exc.SQLAlchemyError as error:
                log.warning("timer lock: its connection failed (%s)", _first_line(error))
                holds = False
        else:
            holds = self._file_is_the_lock()
        if not holds:
            self.lost += 1
            log.warning("%s's timer lock was lost: this process no longer runs its timers", self.name)
            self.release()
        return holds

    def release(self) -> None:
        """Let another process take the lock (nothing to do for a lock lost with its connection)."""
        self.held = False
        if self.connection is not None:
            try:
                if not self.connection.invalidated:
                    self.connection.execute(sa.text("SELECT pg_advisory_unlock_all()"))
                    self.connection.commit()
            except sa.exc.SQLAlchemyError:
                pass  # the connection is gone, and the lock with it
            finally:
                self._drop_connection()
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def _drop_connection(self) -> None:
        """Close the lock's connection (back to the pool holding nothing; one that broke is discarded)."""
        if self.connection is not None:
            try:
                self.connection.close()
            except sa.exc.SQLAlchemyError:
                pass
            self.connection = None
            self.backend_pid = None


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def compete(lock: TimerLock, job: Callable[[], None], stop: threading.Event, interval: float) -> None:
    """Compete for the lock every `interval` seconds until `stop`; while holding it, lead: run `job`. A leader that
    lost the lock waits two intervals before competing again, so one of the others (which try every interval)
    takes over."""
    try:
        while not stop.is_set():
            if lock.acquire():
                log.info("this process runs %s's timers", getattr(lock, "name", "a service"))
                lead(lock, job, stop, interval)
                stop.wait(interval)
            stop.wait(interval)
    finally:
        lock.release()


def lead(lock: TimerLock, job: Callable[[], None], stop: threading.Event, interval: float) -> None:
    """Run `job` every `interval` seconds on APScheduler, each run only after checking the lock is still held;
    return at `stop`, or once a run found the lock lost."""
    lost = threading.Event()

    def run() -> None:
        if stop.is_set() or lost.is_set():
            return
        if not lock.still_held():
            lost.set()
            return
        job()

    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(run, "interval", seconds=interval, id=f"{getattr(lock, 'name', 'service')}-timers",
                      max_instances=1, coalesce=True,
                      next_run_time=datetime.now(timezone.utc))  # APScheduler keeps the machine's time
    scheduler.start()
    try:
        while not stop.is_set() and not lost.wait(min(interval, 0.5)):
            pass
    finally:
        scheduler.shutdown(wait=True)
