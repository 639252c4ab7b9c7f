"""A service's worker process: its bus consumer in the main thread; its outbox relay and its own background loops
(matching's timers, notify's SMS sender) in threads of their own, each with its own connections."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Callable

import sqlalchemy as sa

from shared import bus, topology, tracing
from shared.contracts import Event
from shared.service import ServiceDefinition, WorkerParts, get
from shared.telemetry import EVENTS_HANDLED, HANDLER_SECONDS, check_sessions, mark_ready, serve_worker_metrics

log = logging.getLogger(__name__)


def make_dispatch(name: str, parts: WorkerParts) -> Callable[[Event], None]:
    """The function the consumer calls for each event: the service's handler, run once, counted."""

    def dispatch(event: Event) -> None:
        if event.type not in parts.event_types:
            log.warning("%s has no handler for %s; acknowledged", name, event.type)
            return
        started = time.perf_counter()
        try:
            with tracing.consuming(event):
                first = parts.handle(event)
        except Exception:
            EVENTS_HANDLED.labels(name, event.type, "error").inc()
            raise
        if first:
            HANDLER_SECONDS.labels(name, event.type).observe(time.perf_counter() - started)
        EVENTS_HANDLED.labels(name, event.type, "handled" if first else "duplicate").inc()

    return dispatch


def database_answers(sessions) -> Callable[[], bool]:
    """Whether the service's database answers now (the worker waits for this after a transient fault)."""

    def ready() -> bool:
        try:
            check_sessions(sessions)
            return True
        except sa.exc.SQLAlchemyError:
            return False

    return ready


def background_threads(name: str, parts: WorkerParts, settings, stop: threading.Event) -> list[threading.Thread]:
    """The outbox relay and the listener that wakes it when the web processes commit events, then the service's
    own loops, each in a thread."""
    relay = lambda stop_: parts.outbox.run_relay(parts.sessions, bus.Publisher(settings), stop_,  # noqa: E731
                                                 settings.poll_interval)
    listen = lambda stop_: parts.outbox.doorbell.listen(parts.sessions.kw["bind"], stop_,  # noqa: E731
                                                        settings.poll_interval)
    loops = {"relay": relay, "relay-listener": listen, **parts.loops}
    return [threading.Thread(target=loop, name=f"{name}-{part}", daemon=True, args=(stop,))
            for part, loop in loops.items()]


def run_worker(name: str, definition: ServiceDefinition | None = None) -> None:
    """Run a service's worker until SIGTERM or SIGINT."""
    definition = definition or get(name)
    tracing.configure(name)
    app = definition.create_app()
    parts = definition.worker(app)
    settings = app.extensions["ccs"].settings
    stop = threading.Event()
    worker = bus.Worker(bus.connect(settings), settings, topology.QUEUES[name], make_dispatch(name, parts),
                        ready=database_answers(parts.sessions), on_ready_changed=mark_ready)

    def shut_down(signum, _frame):
        log.info("%s worker stopping (signal %s)", name, signum)
        worker.should_stop = True
        stop.set()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    threads = background_threads(name, parts, settings, stop)
    serve_worker_metrics(name, parts.sessions, parts.outbox)
    for thread in threads:
        thread.start()
    log.info("%s worker started", name)
    worker.run()
    stop.set()
    for thread in threads:
        thread.join(timeout=5)
