"""Helpers every layer of tests shares."""

from __future__ import annotations

from datetime import date, timedelta

from shared.demo import until as wait_for  # the demo asks a running system the same way

__all__ = ["wait_for", "dispatcher", "NEXT_MONDAY", "EXAMPLE_DAY"]

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
