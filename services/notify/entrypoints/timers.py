"""Notify's nightly retention job, on APScheduler, run by its timer leader alone (shared/timers.py): once a day (by
the services' clock) it blanks the text of SMS older than their community keeps them (service_layer.apply_retention).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from services.notify import service_layer
from shared import clock
from shared import timers as leading

log = logging.getLogger(__name__)
LOCK_KEY = 0x6363726E  # "ccrn": notify's retention lock
CHECK_SECONDS = 600.0  # how often the leader looks whether today's run is still to do


def nightly(unit_of_work: Callable, settings) -> dict | None:
    """Run the retention job unless it ran today; what it did (None: it had run)."""
    now = clock.utcnow()
    if not service_layer.retention_due(unit_of_work(), now.date()):
        return None
    counts = service_layer.apply_retention(unit_of_work, now, settings.communities)
    log.info("retention: %s", counts)
    return counts


def retention_loop(context, interval: float = CHECK_SECONDS) -> Callable[[threading.Event], None]:
    """The worker's loop that competes for notify's timer lock and, leading, runs the nightly job."""
    return lambda stop: leading.compete(leading.TimerLock(context.engine, context.settings, "notify", LOCK_KEY),
                                        lambda: nightly(context.uow, context.settings), stop, interval)
