"""A broker outage between a service and RabbitMQ: requests are still accepted, and nothing is lost."""

from __future__ import annotations

import threading

import pytest
from kombu.exceptions import OperationalError

from shared import bus
from tests.helpers import wait_for
from tests.integration.test_bus import SHOPPING, drain
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
