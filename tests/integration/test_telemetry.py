"""Each service's Prometheus metrics: events handled, duplicates and errors, latency, outbox backlog, dead letters."""

from __future__ import annotations

import uuid
from datetime import timedelta

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


def test_the_age_of_the_oldest_unpublished_outbox_event_is_exported_until_the_relay_publishes_it(app_for, token):
    """ccs_outbox_oldest_age_seconds: how long the oldest event not yet published has waited, 0 once none waits."""
    import sqlalchemy as sa

    from services.matching.adapters import outbox
    from shared.bus import Publisher

    app = app_for("matching")
    client = app.test_client()
    oldest = ("ccs_outbox_oldest_age_seconds", (("service", "matching"),))
    assert scrape(client)[oldest] == 0  # nothing waits
    register(client, token("coordinator"), "Sam Patel", "07911 123456")  # volunteer.registered, not yet published
    assert 0 <= scrape(client)[oldest] < 60
    context = app.extensions["ccs"]
    with context.sessions.begin() as session:  # as though the relay had been failing on it for ten minutes
        [row] = session.scalars(sa.select(outbox.table).where(outbox.table.published_at.is_(None))).all()
        row.created_at -= timedelta(minutes=10)
    register(client, token("coordinator"), "Kim Lee", "07911 123457")  # a newer one waits behind it
    samples = scrape(client)
    assert samples[("ccs_outbox_backlog", (("service", "matching"),))] == 2
    assert 600 <= samples[oldest] < 660
    publisher = Publisher(context.settings)
    try:
        assert outbox.relay_once(context.sessions, publisher) == 2
    finally:
        publisher.reset()
    assert scrape(client)[oldest] == 0


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
    words = {word for family in text_string_to_metric_families(text) for sample in family.samples
             for word in (sample.name, *sample.labels.values())}
    words |= {family.documentation for family in text_string_to_metric_families(text)}
    assert not {word for word in words if "Sam" in word or "Patel" in word or "7911" in word}
