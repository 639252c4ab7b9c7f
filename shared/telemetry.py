"""Prometheus metrics for whoever runs the system: events handled, handler errors and latency, the outbox backlog,
dead-lettered messages, SMS sent and failed. Counts only: never a phone number, name or event payload.

Each service's web process serves them at `/metrics` on its own port; the front door does not publish that path.
A service runs several processes (gunicorn's workers and its bus worker). On one machine they share a folder,
`PROMETHEUS_MULTIPROC_DIR` (one per service; `ccs run` sets it under var/prometheus/), and `/metrics` adds them up.
Where a worker runs in a container of its own, set `CCS_METRICS_PORT` and it serves its own counts on that port.
"""

from __future__ import annotations

import logging
import os

from flask import Flask, Response
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess, start_http_server)
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

EVENTS_HANDLED = Counter("ccs_events_handled", "Events a service's worker handled, by type and outcome "
                         "(handled, duplicate: seen before and skipped, error: the handler raised)",
                         ["service", "event_type", "outcome"])
HANDLER_SECONDS = Histogram("ccs_event_handler_seconds", "How long handling one event took, in seconds",
                            ["service", "event_type"], buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
EVENTS_PUBLISHED = Counter("ccs_outbox_published", "Events the outbox relay published to the bus", ["service"])
DEAD_LETTERED = Counter("ccs_messages_dead_lettered", "Messages moved to a dead-letter queue", ["queue"])
SMS = Counter("ccs_sms", "SMS by outcome: sent, failed, retried, delivered, undelivered, received",
              ["outcome"])


class OutboxBacklog:
    """The number of events written but not yet published, read from the service's database when scraped."""

    def __init__(self, name: str, sessions, outbox):
        self.name, self.sessions, self.outbox = name, sessions, outbox

    def collect(self):
        family = GaugeMetricFamily("ccs_outbox_backlog", "Events in the outbox not yet published to the bus",
                                   labels=["service"])
        try:
            with self.sessions() as session:
                family.add_metric([self.name], self.outbox.backlog(session))
        except Exception:  # the database is down: say nothing rather than fail the scrape
            log.warning("could not read the outbox backlog of %s", self.name)
        yield family


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


def serve_worker_metrics(name: str, sessions, outbox) -> None:
    """When CCS_METRICS_PORT is set, serve this worker's own metrics on that port (for one worker per container)."""
    port = os.environ.get("CCS_METRICS_PORT")
    if port:
        start_http_server(int(port), registry=registry_for(name, sessions, outbox))
        log.info("%s worker serves its metrics on port %s", name, port)

