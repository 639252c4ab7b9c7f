"""What time it is, for every service: the machine's clock, or in a rehearsal a later one.

A rehearsal drives weeks of requests, replies and group activities through the running services in minutes (the
metrics scenario in tests/e2e/test_metrics.py does). It sets every process's clock forward together by writing a
number of seconds to the file that CCS_CLOCK_FILE names. Production never sets CCS_CLOCK_FILE, and then the clock
is the machine's.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path


def offset() -> timedelta:
    """How far ahead of the machine's clock the services' clock is (nothing, unless in a rehearsal)."""
    path = os.environ.get("CCS_CLOCK_FILE")
    if not path:
        return timedelta(0)
    try:
        return timedelta(seconds=float(Path(path).read_text() or 0))
    except FileNotFoundError:
        return timedelta(0)


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc) + offset()


def today() -> date:
    """Today's date where the machine is."""
    return (datetime.now() + offset()).date()


def months_after(day: date, months: int) -> date:
    """The same day `months` later, or the last day of that month when it is shorter (31 Jan: 28 or 29 Feb)."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    following = date(year + month // 12, month % 12 + 1, 1)
    return min(date(year, month, 1) + timedelta(days=day.day - 1), following - timedelta(days=1))


def set_forward(path: Path, to: datetime) -> None:
    """Set the clock of every process reading `path` so that it now reads `to` (a rehearsal's step)."""
    seconds = (to - datetime.now(timezone.utc)).total_seconds()
    temporary = path.with_suffix(".tmp")
    temporary.write_text(repr(seconds))
    os.replace(temporary, path)  # a process reads the old offset or the new, never half of one
