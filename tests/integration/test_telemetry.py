"""Each service's Prometheus metrics: events handled, duplicates and errors, latency, outbox backlog, dead letters."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.contracts import EXAMPLES, load_event, make_event
from tests.helpers import dispatcher
from tests.integration.test_bus import drain, publish, running_worker
from tests.integration.test_matching import register


def scrape(client) -> dict[tuple[str, tuple], float]:
    """Every sample the service's /metrics shows, by (name, sorted labels)."""
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.get_data(as_text=True)) for sample in family.samples}


def test_events_handled_duplicates_errors_latency_and_the_outbox_backlog_are_counted(app_for, token):
    app = app_for("matching")
    client = app.test_client()
    register(client, token("coordinator"), "Sam Patel", "07911 123456")
    handled = ("ccs_events_handled_total", (("event_type", "request.submitted"), ("outcome", "handled"),
                                            ("service", "matching")))
    duplicate = (handled[0], (handled[1][0], ("outcome", "duplicate"), handled[1][2]))
    timed = ("ccs_event_handler_seconds_count", (("event_type", "request.submitted"), ("service", "matching")))
    backlog = ("ccs_outbox_backlog", (("service", "matching"),))
    before = scrape(client)
    assert before[backlog] == 1  # Sam's volunteer.registered, not yet published

    dispatch = dispatcher(app, "matching")
    event = load_event(make_event("request.submitted", {**EXAMPLES[("request.submitted", 1)],
                                                        "request_id": str(uuid.uuid4())}))
    dispatch(event)
    dispatch(event)
    after = scrape(client)
    assert after[handled] - before.get(handled, 0) == 1
    assert after[duplicate] - before.get(duplicate, 0) == 1
    assert after[timed] - before.get(timed, 0) == 1
    assert after[backlog] - before[backlog] == 1  # the offer to Sam, not yet published

    def broken(uow, event):
        raise RuntimeError("boom")

    from services.matching.adapters import outbox
    from shared.runtime import make_dispatch
    from shared.service import WorkerParts

    errors = (handled[0], (("event_type", "request.cancelled"), ("outcome", "error"), ("service", "matching")))
    failing = make_dispatch("matching", WorkerParts.from_handlers("matching", app, {"request.cancelled": broken},
                                                                  outbox))
    with pytest.raises(RuntimeError):
        failing(load_event(make_event("request.cancelled", EXAMPLES[("request.cancelled", 1)])))
    assert scrape(client)[errors] - before.get(errors, 0) == 1


def test_a_dead_lettered_message_is_counted_by_queue(app_for):
    app = app_for("metrics")
    client = app.test_client()
    queue = "metrics.intake.all"
    key = ("ccs_messages_dead_lettered_total", (("queue", queue),))
    before = scrape(client).get(key, 0)
    with running_worker(app, "metrics"):
        publish(b"not json at all", "request.submitted", exchange="intake.events")
        drain(f"{queue}.dead", 1)
    assert scrape(client)[key] - before == 1


def test_metrics_carry_no_personal_data(app_for, token):
    app = app_for("matching")
    client = app.test_client()
    register(client, token("coordinator"), "Sam Patel", "07911 123456")
    text = client.get("/metrics").get_data(as_text=True)
    assert "Sam" not in text and "7911" not in text
