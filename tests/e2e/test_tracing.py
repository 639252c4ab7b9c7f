"""Tracing with every process real: one trace follows a request from the caller's HTTP call, through the front
door, intake's outbox, the bus, matching and notify, to the Twilio API call that texts the offer; exported by the
real OTLP/HTTP exporter to a collector of the test's own, and off when nothing asks for it."""

from __future__ import annotations

import secrets
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                      ExportTraceServiceResponse)

from shared import config
from shared.demo import Client, five_free_ports
from shared.supervisor import System
from shared.web import issue_token
from tests.helpers import wait_for
from tests.integration.test_bus import SHOPPING, VOLUNTEER
from tests.twilio_server import TwilioServer

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict


class Collector:
    """An OpenTelemetry collector's OTLP/HTTP trace endpoint (protobuf), keeping every span it is sent."""

    def __init__(self):
        self.spans: list[Span] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope in resource_spans.scope_spans:
                        collector.spans.extend(Span(
                            resource["service.name"], s.name, KINDS[s.kind], s.trace_id.hex(), s.span_id.hex(),
                            s.parent_span_id.hex(), {a.key: _value(a.value) for a in s.attributes})
                            for s in scope.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def trace(self, trace_id: str) -> dict[str, Span]:
        return {span.span_id: span for span in list(self.spans) if span.trace_id == trace_id}


def _value(value):
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture
def traced_system(backend):
    """The whole system on the test's backend, sending SMS through Twilio's API (a local one) and its spans to the
    test's collector."""
    collector = Collector()
    with TwilioServer() as twilio:
        env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{collector.url}/v1/traces",
               "OTEL_BSP_SCHEDULE_DELAY": "100", "TWILIO_ACCOUNT_SID": twilio.account_sid,
               "TWILIO_AUTH_TOKEN": twilio.auth_token, "TWILIO_API_BASE_URL": twilio.url,
               "TWILIO_FROM_NUMBER": "+447700900001"}
        with System(var_dir=Path(tempfile.mkdtemp(prefix="ccs-trace-")), port=five_free_ports(), env=env) as system:
            yield system, collector, twilio
    collector.close()


def _path_to_root(spans: dict[str, Span], span: Span) -> list[Span]:
    path = [span]
    while path[-1].parent_id in spans:
        path.append(spans[path[-1].parent_id])
    return path


def test_one_trace_follows_a_request_from_the_callers_http_call_to_the_twilio_call_that_texts_its_offer(
        traced_system):
    system, collector, twilio = traced_system
    client = Client(system.url, issue_token(config.secret_key(system.var_dir), "e2e", "coordinator"))
    client.call("POST", "/volunteers", 201, json=VOLUNTEER)
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    client.call("POST", "/requests", 201, json=SHOPPING,
                headers={"traceparent": f"00-{trace_id}-{caller_span}-01", "Idempotency-Key": secrets.token_hex(8)})
    wait_for("the offer to reach Twilio", timeout=60, probe=lambda: any("YES" in m["Body"] for m in twilio.created))

    def the_sms_span():
        return next((s for s in collector.trace(trace_id).values() if s.name == "sms send"), None)
    sms = wait_for("the SMS span to be exported", timeout=30, probe=the_sms_span)
    spans = collector.trace(trace_id)
    chain = list(reversed(_path_to_root(spans, sms)))  # from the front door's span to the Twilio call's

    # Unbroken from the caller's own span to the Twilio call: every hop is a child of the one before.
    assert chain[0].parent_id == caller_span
    hops = [(span.service, span.kind) for span in chain]
    assert hops[:2] == [("ccs-frontdoor", "server"), ("ccs-intake", "server")]
    assert hops[-1] == ("ccs-notify", "client")
    services = [service for service, _ in hops]
    assert services.index("ccs-intake") < services.index("ccs-matching") < services.index("ccs-notify")
    # Each event crossing the bus: published (producer) by one service, processed (consumer) by the next.
    crossings = [(a, b) for a, b in zip(chain, chain[1:]) if b.kind == "consumer"]
    assert [(a.kind, a.service != b.service) for a, b in crossings] == [("producer", True)] * len(crossings)
    assert {b.attributes["messaging.destination.name"] for _, b in crossings} >= {"offer.made"}
    assert chain[1].attributes["http.route"] == "/requests"
    assert chain[1].attributes["http.response.status_code"] == 201

    # Spans name operations, never the people: no name, phone number, address or note in any attribute.
    said = " ".join(str(value) for span in collector.spans for value in span.attributes.values())
    for personal in ("Pat Example", "477000", "Promenade", "Lives alone", "Sam Patel", "7911 123456",
                     "+447911123456"):
        assert personal not in said


def test_nothing_is_traced_unless_the_otel_variables_ask_for_it(backend, migrated, app_for, token, monkeypatch):
    from services.intake.adapters import outbox
    from shared import tracing

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.configure("intake")
    app = app_for("intake")
    created = app.test_client().post("/requests", json=SHOPPING, headers={
        **token("coordinator"), "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"})
    assert created.status_code == 201
    with app.extensions["ccs"].sessions() as session:
        bodies = [row.body for row in session.query(outbox.table)]
    assert bodies and all("traceparent" not in body for body in bodies)
