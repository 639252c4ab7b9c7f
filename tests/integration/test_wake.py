"""No polling on the hot path: the outbox relay and notify's SMS sender wake when a transaction gives them work,
on both backends, and their slow sweep still finds what a lost wake-up would have left behind.

Each test runs the loop with a sweep of an hour, so only a wake-up can make it act within the test's wait; and
commits a first piece of work before the one it asserts on, so the loop has already looked once and is waiting."""

from __future__ import annotations

import errno
import json
import threading
import uuid
from contextlib import contextmanager
from datetime import timedelta

import psycopg
import pytest

from shared import bus
from shared.clock import utcnow
from shared.contracts import EXAMPLES
from shared.outbox import Doorbell, Outbox
from tests.helpers import wait_for
from tests.integration.test_bus import drain
from tests.integration.test_notify import Notify, offer_made

HOUR = 3600.0
REQUESTS = "matching.intake.requests"  # where intake's request.submitted goes


@contextmanager
def running(*loops):
    """Run loops `loop(stop)` in threads for the length of the block."""
    stop = threading.Event()
    threads = [threading.Thread(target=loop, args=(stop,), daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
            assert not thread.is_alive()


@pytest.fixture
def intake(app_for):
    """Intake's app context, its outbox, and a publisher (closed afterwards)."""
    from services.intake.adapters import outbox

    context = app_for("intake").extensions["ccs"]
    publisher = bus.Publisher(context.settings)
    yield context, outbox, publisher
    publisher.reset()


def relay(context, outbox, publisher, sweep: float = HOUR):
    """The relay loop as the worker runs it, sweeping only every `sweep` seconds."""
    return lambda stop: outbox.run_relay(context.sessions, publisher, stop, 0.05, sweep)


def listener(context, outbox):
    """The loop that wakes the relay when another process commits events."""
    return lambda stop: outbox.doorbell.listen(context.engine, stop)


def commit_event(context, outbox: Outbox) -> None:
    """Commit a request.submitted through `outbox` (another process's, when it is not the relay's)."""
    with context.sessions.begin() as session:
        outbox.add(session, "request.submitted", {**EXAMPLES[("request.submitted", 1)],
                                                  "request_id": str(uuid.uuid4())})


def test_an_event_committed_in_the_relays_process_is_published_without_waiting_for_the_sweep(backend, intake):
    context, outbox, publisher = intake
    with running(relay(context, outbox, publisher)):
        for _ in range(2):
            commit_event(context, outbox)
            drain(REQUESTS, expect=1)


def test_an_event_committed_by_another_process_wakes_the_relay_through_the_database(backend, intake):
    """PostgreSQL: NOTIFY in the writer's transaction, LISTEN in the relay's worker. SQLite: a FIFO beside the
    database file. The writer here rings a doorbell of its own, as another process's would be."""
    published_when_committed_elsewhere(*intake)


def published_when_committed_elsewhere(context, outbox, publisher) -> None:
    """The relay (sweeping hourly) and its listener publish, twice, an event another process committed."""
    elsewhere = Outbox(outbox.table, outbox.processed, Doorbell(outbox.doorbell.channel))
    with running(relay(context, outbox, publisher), listener(context, outbox)):
        for _ in range(2):
            commit_event(context, elsewhere)
            drain(REQUESTS, expect=1)


def test_an_event_whose_wake_up_was_lost_is_published_by_the_sweep(backend, intake):
    context, outbox, publisher = intake
    unheard = Outbox(outbox.table, outbox.processed, Doorbell(channel=None))  # tells no other process
    with running(relay(context, outbox, publisher, sweep=0.3)):
        for _ in range(2):
            commit_event(context, unheard)
            drain(REQUESTS, expect=1)


@pytest.mark.real_backends
@pytest.mark.parametrize("backend", ["postgres+rabbitmq"], indirect=True)
def test_a_listener_whose_connection_is_cut_listens_again_and_wakes_the_relay(backend, intake):
    context, outbox, publisher = intake
    elsewhere = Outbox(outbox.table, outbox.processed, Doorbell(outbox.doorbell.channel))
    url = context.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    def listening() -> list[int]:
        with psycopg.connect(url, autocommit=True) as conn:
            return [pid for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
                (f"LISTEN {outbox.doorbell.channel}",))]

    with running(relay(context, outbox, publisher), listener(context, outbox)):
        [first] = wait_for("the relay's listener", listening)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (first,))
        commit_event(context, elsewhere)  # its NOTIFY may reach nobody: the listener is back, and rings, soon after
        drain(REQUESTS, expect=1)
        wait_for("the listener to listen again", lambda: [pid for pid in listening() if pid != first])
        commit_event(context, elsewhere)
        drain(REQUESTS, expect=1)


# --- notify's sender -------------------------------------------------------------------------------------------

@pytest.fixture
def notify(app_for):
    return Notify(app_for("notify"))


def sent_to_gateway(notify: Notify) -> list[dict]:
    """What the development gateway was handed, in order."""
    path = notify.settings.var_dir / "sms" / "sent.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def sending(notify: Notify):
    """Notify's sender loop with the development gateway, sweeping only hourly."""
    from services.notify.adapters import DevelopmentGateway
    from services.notify.entrypoints.sender import sender

    return sender(notify.uow, DevelopmentGateway(notify.settings.var_dir), notify.settings, sweep=HOUR)


def test_the_sender_sends_a_message_as_soon_as_it_is_queued(backend, migrated, notify):
    with running(sending(notify)):
        for count in (1, 2):
            notify.deliver("offer.made", offer_made(code=f"48{count:02d}"))
            wait_for("the offer's SMS", lambda: len(sent_to_gateway(notify)) == count)
    assert [m.status for m in notify.messages("offer")] == ["sent", "sent"]


def test_a_message_held_for_later_is_sent_when_it_falls_due_without_a_sweep(backend, migrated, notify):
    """A message waiting out quiet hours or a retry's back-off: the sender sleeps until it is due."""
    from services.notify.domain import OutgoingMessage

    due = utcnow() + timedelta(seconds=1)
    with running(sending(notify)):
        with notify.uow() as uow:
            uow.messages.add(OutgoingMessage(key="later", purpose="reminder", to_phone="+447911123456",
                                             body="Tomorrow at 2pm", correlation_id="held", next_attempt_at=due))
            uow.commit()
        wait_for("the held SMS", lambda: len(sent_to_gateway(notify)) == 1, timeout=15)
    [message] = notify.messages("reminder")
    assert message.status == "sent" and message.sent_at >= due


def test_a_sender_told_to_stop_claims_no_more(backend, migrated, notify):
    """What it claimed it sends and records; what it did not claim stays queued for the next worker, rather than
    being left `sending` by a worker that stops."""
    from services.notify import service_layer
    from services.notify.adapters import DevelopmentGateway

    stop = threading.Event()

    class Stopping(DevelopmentGateway):
        def send(self, to, body, from_=None):
            stop.set()  # the worker is told to stop while this message is with the gateway
            return super().send(to, body, from_)

    for code in ("4811", "4812"):
        notify.deliver("offer.made", offer_made(code=code))
    assert service_layer.send_due(notify.uow(), Stopping(notify.settings.var_dir), utcnow(), notify.settings,
                                  stop=stop) == 1
    assert sorted(m.status for m in notify.messages("offer")) == ["queued", "sent"]


# --- without FIFOs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_a_relay_that_cannot_be_woken_across_processes_looks_every_poll_interval(backend, intake, monkeypatch):
    """A folder that cannot hold a FIFO: the relay looks as often as it used to poll, not only on its sweep."""
    import os

    def no_fifos(path, mode):
        raise OSError(errno.EPERM, "no FIFOs here")

    monkeypatch.setattr(os, "mkfifo", no_fifos)
    published_when_committed_elsewhere(*intake)
