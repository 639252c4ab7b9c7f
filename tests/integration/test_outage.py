"""Outages between a service and RabbitMQ or PostgreSQL: requests are still accepted, events that arrive meanwhile
wait on the broker, and nothing is lost, dead-lettered or done twice."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter

import pytest
import sqlalchemy as sa
from kombu.exceptions import OperationalError

from shared import bus
from shared.contracts import make_event
from shared.runtime import database_answers
from tests.helpers import wait_for
from tests.integration.test_bus import SHOPPING, drain, publish, running_worker
from tests.proxy import TcpProxy


@pytest.fixture
def rabbit_through_proxy(backend, monkeypatch):
    """Point the services at RabbitMQ through a proxy the test can cut."""
    direct = backend.env["BROKER_URL"]
    proxy = TcpProxy("127.0.0.1", 5672)
    monkeypatch.setenv("BROKER_URL", direct.replace(":5672/", f":{proxy.port}/"))
    yield proxy, direct
    proxy.close()


@pytest.mark.real_backends
@pytest.mark.parametrize("backend", ["postgres+rabbitmq"], indirect=True)
def test_requests_are_accepted_while_rabbitmq_is_unreachable_and_delivered_once_it_is_back(
        backend, rabbit_through_proxy, app_for, token, monkeypatch):
    from services.intake.adapters import outbox

    proxy, direct = rabbit_through_proxy
    app = app_for("intake")
    context = app.extensions["ccs"]
    publisher = bus.Publisher(context.settings)
    proxy.cut()
    client = app.test_client()
    created = [client.post("/requests", json=SHOPPING, headers=token("coordinator")) for _ in range(5)]
    assert [r.status_code for r in created] == [201] * 5
    with pytest.raises(OperationalError):
        outbox.relay_once(context.sessions, publisher)
    with context.sessions() as session:
        assert outbox.backlog(session) == 5

    proxy.restore()
    stop = threading.Event()
    relay = threading.Thread(target=outbox.run_relay, args=(context.sessions, publisher, stop, 0.05), daemon=True)
    relay.start()
    try:
        wait_for("the backlog to be published", lambda: _backlog(context, outbox) == 0, timeout=30)
    finally:
        stop.set()
        relay.join(timeout=10)
        publisher.reset()
    monkeypatch.setenv("BROKER_URL", direct)
    delivered = drain("matching.intake.requests", expect=5)
    assert sorted(m.payload["payload"]["request_id"] for m in delivered) == sorted(r.json["id"] for r in created)


def _backlog(context, outbox) -> int:
    with context.sessions() as session:
        return outbox.backlog(session)


OUTAGE_SECONDS = 30


@pytest.mark.real_backends
@pytest.mark.parametrize("backend", ["postgres+rabbitmq"], indirect=True)
def test_events_that_arrive_while_the_database_is_down_30_seconds_are_each_handled_once_when_it_is_back(
        backend, migrated, app_for, token, monkeypatch):
    """Matching's database goes away for 30 s with requests in flight and more arriving: the worker stops taking
    messages, they wait on the broker, and once the database is back each request gets exactly one offer;
    nothing is dead-lettered."""
    from services.matching.domain import Offer
    from tests.integration.test_matching import SHOPPING as SUBMITTED, register

    direct = os.environ["MATCHING_DATABASE_URL"]
    proxy = TcpProxy("127.0.0.1", int(direct.rsplit(":", 1)[1].split("/")[0]))
    monkeypatch.setenv("MATCHING_DATABASE_URL", direct.replace(direct.rsplit("@", 1)[1].split("/")[0],
                                                               f"127.0.0.1:{proxy.port}"))
    app = app_for("matching")
    register(app.test_client(), token("coordinator"), "Sam", "07911123456", weekly_cap=21)
    sessions = app.extensions["ccs"].sessions
    requests = [str(uuid.uuid4()) for _ in range(20)]

    def submit(request_id):
        publish(make_event("request.submitted", {**SUBMITTED, "request_id": request_id}), "request.submitted")

    def offers() -> Counter:
        with sessions() as session:
            return Counter(str(r) for r in session.scalars(sa.select(Offer.request_id)))

    try:
        with running_worker(app, "matching", ready=database_answers(sessions)):
            for request_id in requests[:10]:
                submit(request_id)
            wait_for("the first requests to be handled", lambda: len(offers()) >= 2)
            proxy.cut()  # the rest of the first ten are in flight
            for request_id in requests[10:]:
                submit(request_id)
            time.sleep(OUTAGE_SECONDS)  # the outage itself: nothing to wait for
            proxy.restore()
            wait_for("every request to be offered", lambda: set(offers()) == set(requests), timeout=60)
        assert offers() == Counter({request_id: 1 for request_id in requests})
        drain("matching.intake.requests.dead", expect=0)
    finally:
        proxy.close()
