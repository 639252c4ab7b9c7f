"""Tracing's own rules, on the real OpenTelemetry SDK with an in-memory exporter: a span continues the context it
is given, a failed one keeps no person's details, probes make no spans, and nothing is traced while it is off."""

from __future__ import annotations

import secrets
import uuid
from types import SimpleNamespace

import pytest
from flask import Flask
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from shared import tracing

PHONE = "+447911123456"


@pytest.fixture
def spans(monkeypatch):
    """Tracing on for this test alone (its own provider, never the process's), and the spans it finished."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "TRACER", provider.get_tracer("test"))
    monkeypatch.setattr(tracing, "_configured", "test")
    yield exporter.get_finished_spans
    provider.shutdown()


def _everything_said(span) -> str:
    return " ".join([span.name, str(span.status.description), *map(str, span.attributes.values()),
                     *(f"{e.name} {dict(e.attributes)}" for e in span.events)])


def test_a_failed_span_keeps_the_errors_kind_and_first_line_never_its_details(spans):
    failure = RuntimeError(f'duplicate key value violates unique constraint "volunteers_phone_key"\n'
                           f"DETAIL:  Key (phone)=({PHONE}) already exists.")
    with pytest.raises(RuntimeError):
        with tracing.span_from({}, "sms send"):
            raise failure
    [span] = spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == ('RuntimeError: duplicate key value violates unique constraint '
                                       '"volunteers_phone_key"')
    assert span.attributes["error.type"] == "RuntimeError"
    assert PHONE not in _everything_said(span) and not span.events


def test_an_events_span_is_the_child_of_the_span_that_published_it_and_what_it_publishes_carries_it_on(spans):
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    event = SimpleNamespace(traceparent=f"00-{trace_id}-{parent}-01", tracestate=None, type="offer.made",
                            event_id=uuid.uuid4(), correlation_id="c")
    with tracing.consuming(event):
        carried = tracing.current_context()
    [span] = spans()
    assert format(span.context.trace_id, "032x") == trace_id and format(span.parent.span_id, "016x") == parent
    assert carried["traceparent"] == f"00-{trace_id}-{format(span.context.span_id, '016x')}-01"
    assert span.attributes["messaging.message.id"] == str(event.event_id)


def test_a_malformed_traceparent_starts_a_new_trace_rather_than_failing_the_event(spans):
    event = SimpleNamespace(traceparent="not-a-traceparent", tracestate=None, type="offer.made",
                            event_id=uuid.uuid4(), correlation_id="c")
    with tracing.consuming(event):
        pass
    [span] = spans()
    assert span.parent is None


def test_requests_continue_the_callers_trace_probes_make_no_spans_and_a_500_names_no_one(spans):
    app = Flask(__name__)
    tracing.trace_requests(app)
    app.add_url_rule("/requests/<uuid:request_id>", "request", lambda request_id: {"ok": True})
    app.add_url_rule("/readyz/intake", "readyz", lambda: {"status": "ready"})

    @app.post("/fails")
    def fails():
        raise ValueError(f"phone {PHONE} is not valid\nmore")

    client = app.test_client()
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    answer = client.get(f"/requests/{uuid.uuid4()}", headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    assert answer.status_code == 200
    assert client.get("/readyz/intake").status_code == 200
    assert client.post("/fails").status_code == 500
    served, failed = spans()
    assert served.name == "GET /requests/<uuid:request_id>"  # the route, not the path with its id
    assert format(served.context.trace_id, "032x") == trace_id and format(served.parent.span_id, "016x") == parent
    assert served.attributes["http.response.status_code"] == 200
    assert failed.status.status_code == StatusCode.ERROR and "more" not in _everything_said(failed)


def test_nothing_is_traced_and_nothing_travels_while_tracing_is_off(monkeypatch):
    monkeypatch.setattr(tracing, "_configured", None)
    event = SimpleNamespace(traceparent=f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01", tracestate=None,
                            type="offer.made", event_id=uuid.uuid4(), correlation_id="c")
    with tracing.consuming(event) as span:
        assert not span.is_recording() and tracing.current_context() == {}
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracing.exporters_asked_for() == [] and not tracing.configure("intake")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.exporters_asked_for() == []
