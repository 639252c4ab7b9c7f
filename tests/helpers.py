"""Helpers every layer of tests shares."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any, Callable

from shared.demo import until as wait_for  # the demo asks a running system the same way

__all__ = ["wait_for", "dispatcher", "all_at_once", "NEXT_MONDAY", "EXAMPLE_DAY"]

# A request's window must be from yesterday to a year ahead: tests ask for help on a Monday 8 to 14 days ahead (no
# reminder falls due while a test runs). The FHIR examples in tests/fixtures/fhir/ say EXAMPLE_DAY; tests read them
# with that day moved to NEXT_MONDAY.
NEXT_MONDAY = (date.today() + timedelta(days=14 - date.today().weekday())).isoformat()
EXAMPLE_DAY = "2030-01-07"


def dispatcher(app, name: str):
    """What the worker of service `name` does with one event: `dispatcher(app, "matching")(event)`."""
    from shared.runtime import make_dispatch
    from shared.service import get

    return make_dispatch(name, get(name).worker(app))


def all_at_once(calls: list[Callable[[], Any]], timeout: float = 30) -> list[Any]:
    """Run each call in a thread of its own, all let go at the same moment (as two timer leaders after a lost lock,
    or two workers on one queue): what each returned, in the order they finished. Any exception fails the test with
    every one raised."""
    start, results, errors = threading.Barrier(len(calls)), [], []

    def run(call: Callable[[], Any]) -> None:
        start.wait()
        try:
            results.append(call())
        except Exception as error:  # noqa: BLE001 - the test reports every one
            errors.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not errors, errors
    return results
