"""Helpers every layer of tests shares."""

from __future__ import annotations

from shared.demo import until as wait_for  # the demo asks a running system the same way

__all__ = ["wait_for", "dispatcher"]


def dispatcher(app, name: str):
    """What the worker of service `name` does with one event: `dispatcher(app, "matching")(event)`."""
    from shared.runtime import make_dispatch
    from shared.service import get

    return make_dispatch(name, get(name).worker(app))
