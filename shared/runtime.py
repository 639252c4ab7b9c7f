"""A service's worker process: its bus consumer in the main thread, its outbox relay (and, for notify, the
SMS sender) in threads of their own, each with its own connections."""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import time
from types import ModuleType

from flask import Flask

from shared import bus, topology
from shared.contracts import Event
from shared.outbox import handle_once
from shared.telemetry import EVENTS_HANDLED, HANDLER_SECONDS, serve_worker_metrics

log = logging.getLogger(__name__)


def service_modules(name: str) -> tuple[ModuleType, ModuleType, ModuleType]:
    """A service's api (app factory), model and handlers modules."""
    return tuple(importlib.import_module(f"services.{name}.{part}") for part in ("api", "model", "handlers"))


def make_dispatch(app: Flask, name: str):
    """The function the consumer calls for each event: the service's handler, run once, in the app context."""
    _, model, handlers = service_modules(name)
    context = app.extensions["ccs"]

    def dispatch(event: Event) -> None:
        handler = handlers.HANDLERS.get(event.type)
        if handler is None:
            log.warning("%s has no handler for %s; acknowledged", name, event.type)
            return
        started = time.perf_counter()
        try:
            with app.app_context():
                first = handle_once(context.sessions, model.ProcessedEvent, name, event, handler)
        except Exception:
            EVENTS_HANDLED.labels(name, event.type, "error").inc()
            raise
        if first:
            HANDLER_SECONDS.labels(name, event.type).observe(time.perf_counter() - started)
        EVENTS_HANDLED.labels(name, event.type, "handled" if first else "duplicate").inc()

    return dispatch


def background_threads(app: Flask, name: str, stop: threading.Event) -> list[threading.Thread]:
    """The outbox relay; for matching its timers, for notify the SMS sender."""
    _, model, _ = service_modules(name)
    context = app.extensions["ccs"]
    interval = context.settings.poll_interval
    threads = [threading.Thread(target=model.outbox.run_relay, name=f"{name}-relay", daemon=True,
                                args=(context.sessions, bus.Publisher(context.settings), stop, interval))]
    if name == "matching":
        from services.matching.timers import run_timers

        threads.append(threading.Thread(target=run_timers, name="matching-timers", daemon=True,
                                        args=(context.engine, context.sessions, context.settings, stop)))
    if name == "notify":
        from services.notify import sms

        threads.append(threading.Thread(target=sms.run_sender, name="notify-sender", daemon=True,
                                        args=(context.sessions, sms.gateway_for(context.settings), stop, interval)))
    return threads


def run_worker(name: str) -> None:
    """Run a service's worker until SIGTERM or SIGINT."""
    api, _, _ = service_modules(name)
    app = api.create_app()
    settings = app.extensions["ccs"].settings
    stop = threading.Event()
    worker = bus.Worker(bus.connect(settings), settings, topology.QUEUES[name], make_dispatch(app, name))

    def shut_down(signum, _frame):
        log.info("%s worker stopping (signal %s)", name, signum)
        worker.should_stop = True
        stop.set()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    threads = background_threads(app, name, stop)
    serve_worker_metrics(name, app.extensions["ccs"].sessions, service_modules(name)[1].outbox)
    for thread in threads:
        thread.start()
    log.info("%s worker started", name)
    worker.run()
    stop.set()
    for thread in threads:
        thread.join(timeout=5)
