"""Intake's timers, on APScheduler, run by its timer leader alone (shared/timers.py): the nightly retention job,
once a day (by the services' clock), pseudonymises the people of requests closed longer than their community keeps
them, and removes old audit entries (service_layer.apply_retention); every check, the surveys whose time has come
(a bereaved person's, some weeks after their support) are begun (service_layer.send_due_surveys)."""

from __future__ import annotations

import logging
import threading
from typing import Callable

from services.intake import service_layer
from shared import clock
from shared import timers as leading
from shared.communities import all_communities

log = logging.getLogger(__name__)
LOCK_KEY = 0x63637269  # "ccri": intake's retention lock
CHECK_SECONDS = 600.0  # how often the leader looks whether today's run is still to do


def nightly(unit_of_work: Callable) -> dict | None:
    """Begin the surveys that are due; run the retention job unless it ran today; what it did (None: it had run)."""
    now = clock.utcnow()
    if begun := service_layer.send_due_surveys(unit_of_work, now):
        log.info("surveys begun: %d", begun)
    if not service_layer.retention_due(unit_of_work(), now.date()):
        return None
    counts = service_layer.apply_retention(unit_of_work, now, all_communities())
    log.info("retention: %s", counts)
    return counts


def retention_loop(context, interval: float = CHECK_SECONDS) -> Callable[[threading.Event], None]:
    """The worker's loop that competes for intake's timer lock and, leading, runs the nightly job."""
    return lambda stop: leading.compete(leading.TimerLock(context.engine, context.settings, "intake", LOCK_KEY),
                                        lambda: nightly(context.uow), stop, interval)
