"""Prometheus metrics for whoever runs the system: events handled, handler errors and latency, the outbox backlog
and the age of its oldest event, dead-lettered messages, SMS sent and failed. Counts only: never a phone number,
name or event payload.

Each service's web process serves them at `/metrics` on its own port; the front door does not publish that path.
A service runs several processes (gunicorn's workers and its bus worker). On one machine they share a folder,
`PROMETHEUS_MULTIPROC_DIR` (one per service; `ccs run` sets it under var/prometheus/), and `/metrics` adds them up.
Where a worker runs in a container of its own, set `CCS_METRICS_PORT` and it serves its own counts on that port,
with `/healthz` (alive) and `/readyz` (its database answers and its consumer is connected) beside them.

Readiness: each web process answers `/readyz/<service>` (shared/web.py) and each worker `/readyz` from the checks
here: 200 with every check "ok", else 503 naming the checks that failed. A worker says when its consumer is
connected with `mark_ready(True)` (or `WORKER_READY.set(True)`), and `mark_ready(False, "why")` when it is not.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from functools import lru_cache
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Flask, Response
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram,
                               generate_latest, make_wsgi_app, multiprocess)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from shared.config import Settings

log = logging.getLogger(__name__)

EVENTS_HANDLED = Counter("ccs_events_handled", "Events a service's worker handled, by type and outcome "
                         "(handled, duplicate: seen before and skipped, error: the handler raised)",
                         ["service", "event_type", "outcome"])
HANDLER_SECONDS = Histogram("ccs_event_handler_seconds", "How long handling one event took, in seconds",
                            ["service", "event_type"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
EVENTS_PUBLISHED = Counter("ccs_outbox_published", "Events the outbox relay published to the bus", ["service"])
DEAD_LETTERED = Counter("ccs_messages_dead_lettered", "Messages moved to a dead-letter queue", ["queue"])
RETRIED = Counter("ccs_messages_retried", "Messages put back to wait on the broker after a failure, by kind of fault "
                  "(transient: the database or broker was unreachable; error: anything else)", ["queue", "fault"])
SMS = Counter("ccs_sms", "SMS by outcome: sent, failed, retried, delivered, undelivered, received",
              ["outcome"])


def describe(error: BaseException) -> str:
    """A fault fit for a log line, a span or a dead letter's reason: its kind and the first line of its message.
    The rest (PostgreSQL's DETAIL, the statement and its parameters) can quote the values being written, a phone
    number or a name, and stays out; the code's own messages name no person."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]


def frames(error: BaseException) -> str:
    """Where a fault happened (the traceback's frames, without its message), for a log."""
    return "".join(traceback.format_tb(error.__traceback__))


class OutboxBacklog:
    """The events written but not yet published, read from the service's database when scraped: how many, and how
    long the oldest has waited (a relay stuck on one event shows as an age that grows, however small the count)."""

    def __init__(self, name: str, sessions, outbox):
        self.name, self.sessions, self.outbox = name, sessions, outbox

    def collect(self):
        backlog = GaugeMetricFamily("ccs_outbox_backlog", "Events in the outbox not yet published to the bus",
                                    labels=["service"])
        oldest = GaugeMetricFamily("ccs_outbox_oldest_age_seconds", "How long the oldest event in the outbox not yet "
                                   "published has waited, in seconds (0 when none waits)", labels=["service"])
        try:
            with self.sessions() as session:
                backlog.add_metric([self.name], self.outbox.backlog(session))
                oldest.add_metric([self.name], self.outbox.oldest_waiting_seconds(session))
        except Exception:  # the database is down: say nothing rather than fail the scrape
            log.warning("could not read the outbox backlog of %s", self.name)
        yield backlog
        yield oldest


class _ThisProcess:
    """Everything this process counted (the default registry), as one collector."""

    def collect(self):
        yield from REGISTRY.collect()


def registry_for(name: str, sessions, outbox) -> CollectorRegistry:
    """A registry with every process's counts for the service (or this process's alone) and its outbox backlog."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(OutboxBacklog(name, sessions, outbox))
    return registry


def add_metrics_endpoint(app: Flask, name: str, outbox) -> None:
    """Serve the service's metrics at /metrics (not published by the front door)."""
    context = app.extensions["ccs"]

    @app.get("/metrics")
    def metrics():
        registry = registry_for(name, context.sessions, outbox)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


# --- health and readiness --------------------------------------------------------------------------------------

RETRY_AFTER_SECONDS = 5  # what a 503 (a dependency down, or not ready) tells the caller to wait before trying again


class NotReady(Exception):
    """A readiness check that failed, saying why in words fit for a public answer (no addresses or secrets)."""


@dataclass(frozen=True)
class Check:
    """One readiness check: `run()` returns when it passes and raises when it does not. One that `needs` another
    is not run when that one failed."""

    name: str
    run: Callable[[], None]
    needs: str | None = None


def run_checks(checks: list[Check]) -> dict[str, str]:
    """Each check's outcome, in order: "ok", or why not."""
    results: dict[str, str] = {}
    for check in checks:
        if check.needs and results.get(check.needs) != "ok":
            results[check.name] = f"not checked: {check.needs} failed"
            continue
        try:
            check.run()
        except NotReady as err:
            results[check.name] = str(err)
        except Exception as err:  # whatever the dependency raised: name its kind, keep its words for the log
            log.warning("readiness check %s failed: %s", check.name, describe(err))
            results[check.name] = f"failed: {type(err).__name__}"
        else:
            results[check.name] = "ok"
    return results


def readiness(service: str, checks: list[Check]) -> tuple[int, dict[str, Any]]:
    """The status and body of a /readyz answer: 200 and each check "ok"; else 503 as RFC 9457 problem details
    naming the failed checks (`failing`), with every check's outcome (`checks`)."""
    results = run_checks(checks)
    failing = [name for name, outcome in results.items() if outcome != "ok" and not outcome.startswith("not checked")]
    if not failing:
        return 200, {"service": service, "status": "ready", "checks": results}
    detail = f"{service} is not ready: " + "; ".join(f"{name}: {results[name]}" for name in failing) + "."
    return 503, {"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": detail,
                 "service": service, "failing": failing, "checks": results}


def check_database(engine: "Engine") -> None:
    """The database answers a query."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def check_sessions(sessions) -> None:
    """The database behind a session factory answers a query."""
    with sessions() as session:
        session.execute(text("SELECT 1"))


@lru_cache(maxsize=None)
def newest_migrations(service: str) -> frozenset[str]:
    """The head revisions of a service's migrations, as this process's code has them."""
    from alembic.script import ScriptDirectory

    from shared.db import migrations_config

    return frozenset(ScriptDirectory.from_config(migrations_config(service, "")).get_heads())


def check_migrations(service: str, engine: "Engine") -> None:
    """The service's database is at its newest migration (not behind, as before `ccs migrate`, nor ahead, as after
    a newer release migrated it and this one was rolled back)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        current = frozenset(MigrationContext.configure(connection).get_current_heads())
    newest = newest_migrations(service)
    if current != newest:
        at = ", ".join(sorted(current)) or "no revision"
        raise NotReady(f"the database is at {at}, the newest migration is {', '.join(sorted(newest))}")


def open_broker(settings: "Settings") -> None:
    """A connection to the broker opens (RabbitMQ), or the bus's folders take a file (the filesystem transport)."""
    from shared import bus

    connection = bus.connect(settings)
    try:
        if settings.broker_is_filesystem:
            options = connection.transport_options
            for folder in dict.fromkeys((options["data_folder_out"], options["control_folder"])):
                with tempfile.TemporaryFile(dir=folder, prefix=".readyz-"):  # a hidden name no queue reads
                    pass
        else:
            connection.ensure_connection(max_retries=0, interval_start=0, timeout=10)
    finally:
        connection.release()


class BrokerCheck:
    """The broker check of /readyz, remembering a success for FRESH seconds: probes from Kubernetes, compose and
    load balancers, or a storm of them, then open one broker connection per process every few seconds rather than
    one per call. A failure is never remembered (the next call looks again, so a broker back up is seen at once);
    callers that arrive while a check is under way wait for it and share its outcome, success or failure."""

    FRESH = 5.0  # seconds a success is taken on trust: a broker that goes down is reported at most this late

    def __init__(self, look: Callable[["Settings"], None] = open_broker, clock: Callable[[], float] = time.monotonic):
        self.look, self.clock = look, clock
        self._lock = threading.Lock()
        self._outcomes: dict[str, tuple[float, Exception | None]] = {}  # by broker: when last looked, what failed

    def __call__(self, settings: "Settings") -> None:
        """Pass when the broker was reachable a moment ago or is now; raise what the look raised when it is not."""
        broker = str(settings.var_dir / "broker") if settings.broker_is_filesystem else settings.broker_url
        asked = self.clock()
        with self._lock:
            looked, failure = self._outcomes.get(broker, (float("-inf"), None))
            if looked >= asked or (failure is None and asked - looked < self.FRESH):
                if failure is not None:  # looked at while this call waited: the same answer, not another look
                    raise failure
                return
            try:
                self.look(settings)
            except Exception as err:
                self._outcomes[broker] = (self.clock(), err)
                raise
            self._outcomes[broker] = (self.clock(), None)


check_broker = BrokerCheck()  # this process's: every /readyz of it shares what it remembers


class WorkerReadiness:
    """Whether this worker's consumer is connected to the broker: the worker sets it, its /readyz reads it.

    `set(True)` once consuming (kombu's `on_consume_ready`); `set(False, "why")` when the connection is lost
    (`on_connection_error`) or consuming stops (`on_consume_end`). Not ready until set."""

    NOT_YET = "the consumer has not connected yet"

    def __init__(self):
        self._lock = threading.Lock()
        self._ready, self._reason = False, self.NOT_YET

    def set(self, ready: bool, reason: str | None = None) -> None:
        """Say whether the consumer is connected (and, when it is not, why: words fit for a public answer)."""
        with self._lock:
            self._ready = bool(ready)
            self._reason = "" if ready else (reason or "the consumer is not connected")

    def is_set(self) -> bool:
        """True while the consumer is connected."""
        return self._ready

    def check(self) -> None:
        """A readiness check: passes while the consumer is connected."""
        with self._lock:
            if not self._ready:
                raise NotReady(self._reason)


WORKER_READY = WorkerReadiness()  # this process's worker; the runtime sets it


def mark_ready(ready: bool = True, reason: str | None = None) -> None:
    """Say whether this worker's consumer is connected (see WorkerReadiness)."""
    WORKER_READY.set(ready, reason)


def worker_checks(sessions, readiness_flag: WorkerReadiness = WORKER_READY) -> list[Check]:
    """What a worker's /readyz checks: its consumer is connected and its database answers."""
    checks = [Check("consumer", readiness_flag.check)]
    if sessions is not None:
        checks.append(Check("database", lambda: check_sessions(sessions)))
    return checks


class _Server(ThreadingMixIn, WSGIServer):
    """A small threaded WSGI server: one slow probe does not hold up a scrape."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No line per request on stderr (probes and scrapes come every few seconds)."""

    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        pass


def worker_app(name: str, sessions, outbox, readiness_flag: WorkerReadiness = WORKER_READY):
    """The WSGI app a worker serves on CCS_METRICS_PORT: /healthz, /readyz, and its metrics on any other path."""
    metrics = make_wsgi_app(registry_for(name, sessions, outbox))

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path not in ("/healthz", "/readyz"):
            return metrics(environ, start_response)
        if path == "/healthz":
            status, body, mimetype = 200, {"service": name, "process": "worker", "status": "ok"}, "application/json"
        else:
            status, body = readiness(name, worker_checks(sessions, readiness_flag))
            mimetype = "application/json" if status == 200 else "application/problem+json"
        payload = json.dumps(body).encode()
        headers = [("Content-Type", mimetype), ("Content-Length", str(len(payload))), ("Cache-Control", "no-store")]
        if status == 503:
            headers.append(("Retry-After", str(RETRY_AFTER_SECONDS)))
        start_response("200 OK" if status == 200 else "503 Service Unavailable", headers)
        return [payload] if environ.get("REQUEST_METHOD") != "HEAD" else [b""]

    return app


def serve_worker_metrics(name: str, sessions, outbox, *, port: int | str | None = None,
                         readiness_flag: WorkerReadiness = WORKER_READY) -> WSGIServer | None:
    """When CCS_METRICS_PORT is set (or `port` is given), serve this worker's own metrics on that port (for one
    worker per container), with /healthz (alive) and /readyz (its consumer connected, see `mark_ready`, and its
    database answering). Returns the server (its `shutdown()` stops it), or None when there is no port."""
    port = os.environ.get("CCS_METRICS_PORT") if port is None else port
    if port is None or str(port).strip() == "":
        return None
    server = make_server("0.0.0.0", int(port), worker_app(name, sessions, outbox, readiness_flag), _Server,
                         handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name=f"{name}-metrics", daemon=True).start()
    log.info("%s worker serves its metrics, /healthz and /readyz on port %s", name, server.server_port)
    return server
