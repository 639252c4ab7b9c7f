"""Matching's timed jobs (offers expiring, check reminders, befriending visits overdue, wellbeing check-ins,
applicants waiting too long) on APScheduler, run by its timer leader alone (shared/timers.py: one process per
deployment at a time). Every job claims the rows it works on (`FOR UPDATE SKIP LOCKED`, see service_layer; a
check-in by its unique key), so two runs at once, as after a lost lock, still expire, cascade, remind and ask once
each. Overdue visits are looked for at every run: a match is reminded once per overdue spell, whatever the day, so
running more often than daily reminds no one twice; so are check-ins due, each asked once per due date; the
coordinators are told how many applicants wait too long only when that number changes.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from sqlalchemy.engine import Engine

from services.matching import service_layer
from shared import clock
from shared import timers as leading
from shared.config import Settings

log = logging.getLogger(__name__)
LOCK_KEY = 0x63637374  # "ccst": one advisory lock number for matching's timers
INTERVAL_SECONDS = 30.0


class TimerLock(leading.TimerLock):
    """Matching's timer lock."""

    def __init__(self, engine: Engine, settings: Settings):
        super().__init__(engine, settings, "matching", LOCK_KEY)


def expire_offers(unit_of_work: Callable, settings) -> int:
    """Expire the offers unanswered as of now."""
    with unit_of_work() as uow:
        return service_layer.expire_offers(uow, clock.utcnow(), settings.policy)


def remind_expiring_checks(unit_of_work: Callable, settings) -> int:
    """Send the reminders of checks expiring soon, as of today."""
    with unit_of_work() as uow:
        return service_layer.remind_expiring_checks(uow, clock.today())


def remind_overdue_visits(unit_of_work: Callable, settings) -> int:
    """Remind the volunteers of befriending matches whose visit is overdue as of today (once per overdue spell)."""
    with unit_of_work() as uow:
        return service_layer.remind_overdue_visits(uow, clock.today())


def remind_applicants_waiting(unit_of_work: Callable, settings) -> int:
    """Tell the coordinators of each community whose count changed how many applicants wait too long, as of now."""
    with unit_of_work() as uow:
        return service_layer.remind_applicants_waiting(uow, clock.utcnow())
def prompt_check_ins(unit_of_work: Callable, settings) -> int:
    """Ask the volunteers whose wellbeing check-in is due how they are finding volunteering (once per due date)."""
    with unit_of_work() as uow:
        return service_layer.prompt_check_ins(uow, clock.utcnow())


def run_jobs_once(unit_of_work: Callable, settings) -> None:
    """Run every job once, each in its own transaction."""
    expired, reminded = expire_offers(unit_of_work, settings), remind_expiring_checks(unit_of_work, settings)
    overdue, asked = remind_overdue_visits(unit_of_work, settings), prompt_check_ins(unit_of_work, settings)
    waiting = remind_applicants_waiting(unit_of_work, settings)
    if expired or reminded or overdue or asked or waiting:
        log.info("timers: %d offers expired, %d check reminders, %d overdue visits, %d wellbeing check-ins, %d "
                 "communities told of applicants waiting", expired, reminded, overdue, asked, waiting)


def run_timers(engine: Engine, unit_of_work: Callable, settings, stop: threading.Event,
               interval: float = INTERVAL_SECONDS, lock: TimerLock | None = None) -> None:
    """Compete for matching's timer lock every `interval` seconds until `stop`; while holding it, run the jobs."""
    leading.compete(lock or TimerLock(engine, settings), lambda: run_jobs_once(unit_of_work, settings), stop, interval)


def timers_loop(context) -> Callable[[threading.Event], None]:
    """The worker's loop that runs the timers, for a service context (its engine, unit of work and settings)."""
    return lambda stop: run_timers(context.engine, context.uow, context.settings, stop)
