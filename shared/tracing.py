"""OpenTelemetry tracing, off unless asked for: one trace follows a request from the HTTP call that made it,
through the outbox and the bus, into each service's handler, and on to Twilio.

Turn it on with the standard variables: `OTEL_TRACES_EXPORTER=otlp` (OTLP over HTTP/protobuf, to
`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or `console`; `OTEL_SERVICE_NAME` overrides
the name each process reports (`ccs-<service>`); `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and
`OTEL_BSP_*` work as the SDK documents them. Unset, or `none`, or `OTEL_SDK_DISABLED=true`: no spans are made.

How the context travels:
- HTTP: an incoming W3C `traceparent` header is the parent of the request's server span (`trace_requests`);
- outbox -> bus: `Outbox.add` stores the current context in the event's envelope (`traceparent`, `tracestate`),
  so the relay, which publishes later in another thread, and every consumer continue the same trace;
- handler: a consumer span per event, the envelope's context as its parent (`consuming`); whatever the handler
  publishes carries this span on;
- SMS: notify keeps the context with each queued message, and its sender's span around the Twilio call is its
  child (`span_from`).

Spans name operations and identifiers (event type and id, route, message purpose), never a phone number, name
or payload, as the logs do; a failed span keeps only the error's kind and first line, never its traceback.
Probes and scrapes (/healthz, /readyz, /metrics) make no spans.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from flask import Flask, g, request
from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared.telemetry import describe

log = logging.getLogger(__name__)

TRACER = trace.get_tracer("ccs")
UNTRACED = ("/healthz", "/readyz", "/metrics")  # probes and scrapes, every few seconds from every container
_configured: str | None = None


def exporters_asked_for() -> list[str]:
    """The exporters the standard variables ask for; empty when tracing is off (the default here)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [name.strip().lower() for name in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return [name for name in names if name and name != "none"]


def configure(service: str) -> bool:
    """Set this process's tracer provider up from the `OTEL_*` variables (once); whether tracing is on."""
    global _configured
    if _configured is not None:
        return True
    exporters = exporters_asked_for()
    if not exporters:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME; ours is only the default.
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": f"ccs-{service}"}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            exporter = OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
        elif name == "console":
            exporter = ConsoleSpanExporter()
        else:
            log.warning("OTEL_TRACES_EXPORTER=%s is not one this system knows (otlp, console); ignored", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))  # flushed at exit by the provider
    trace.set_tracer_provider(provider)
    _configured = service
    log.info("tracing on: %s", ", ".join(exporters))
    return True


# --- carrying the context --------------------------------------------------------------------------------------------

def current_context() -> dict[str, str]:
    """The current trace context as W3C fields (`traceparent`, maybe `tracestate`); empty outside any span."""
    carrier: dict[str, str] = {}
    if _configured is not None:
        propagate.inject(carrier)
    return carrier


def _parent(carrier: Mapping[str, Any] | None) -> context.Context | None:
    fields = {key: value for key, value in (carrier or {}).items() if isinstance(value, str)}
    return propagate.extract(fields) if fields else None


@contextmanager
def span_from(carrier: Mapping[str, Any] | None, name: str, kind: SpanKind = SpanKind.INTERNAL,
              attributes: dict[str, Any] | None = None) -> Iterator[trace.Span]:
    """A span whose parent is the context in `carrier` (an envelope, a header map, a stored row's fields), or
    the current span when it has none; an exception leaves it marked as an error. Tracing off, it costs nothing."""
    if _configured is None:
        yield trace.INVALID_SPAN
        return
    # The SDK would record the exception's words and traceback on the span: they can quote a person's details (a
    # database's DETAIL line), so the span gets only the error's kind and first line (telemetry.describe).
    with TRACER.start_as_current_span(name, context=_parent(carrier), kind=kind, attributes=attributes,
                                      record_exception=False, set_status_on_exception=False) as span:
        try:
            yield span
        except BaseException as error:
            _failed(span, error)
            raise


def _failed(span: trace.Span, error: BaseException) -> None:
    span.set_status(Status(StatusCode.ERROR, describe(error)))
    span.set_attribute("error.type", type(error).__qualname__)


@contextmanager
def consuming(event) -> Iterator[trace.Span]:
    """The consumer span of one event, a child of the span that published it."""
    if _configured is None:
        yield trace.INVALID_SPAN
        return
    carrier = {"traceparent": event.traceparent, "tracestate": event.tracestate}
    with span_from(carrier, f"{event.type} process", SpanKind.CONSUMER, {
        "messaging.system": "rabbitmq", "messaging.operation.type": "process",
        "messaging.destination.name": event.type, "messaging.message.id": str(event.event_id),
        "ccs.correlation_id": event.correlation_id,
    }) as span:
        yield span


# --- HTTP ------------------------------------------------------------------------------------------------------------

def trace_requests(app: Flask) -> None:
    """A server span for each request, continuing the caller's `traceparent`; named by route, not by path (a
    path can carry an identifier)."""

    @app.before_request
    def start_span():
        if request.path.startswith(UNTRACED):
            return
        rule = request.url_rule.rule if request.url_rule else "unmatched"
        span = TRACER.start_span(f"{request.method} {rule}", context=propagate.extract(request.headers),
                                 kind=SpanKind.SERVER, attributes={
                                     "http.request.method": request.method, "http.route": rule})
        g._trace = (span, context.attach(trace.set_span_in_context(span)))

    @app.after_request
    def record_status(response):
        held = g.get("_trace")
        if held:
            held[0].set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                held[0].set_status(Status(StatusCode.ERROR))
        return response

    @app.teardown_request
    def end_span(error):
        held = g.pop("_trace", None)
        if held:
            span, token = held
            if error is not None:
                _failed(span, error)
            span.end()
            context.detach(token)
